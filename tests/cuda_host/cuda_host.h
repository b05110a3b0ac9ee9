// CUDA's built-ins on the CPU, so the very sources in kernels/*.cu run in the test suite.
//
// A launch runs its blocks one after another. Inside a block, each CUDA thread is a fiber
// (ucontext) with its own stack, and the scheduler resumes them in thread order: each runs until
// it reaches __syncthreads() or a warp shuffle, and the block goes on only when every thread that
// must meet there has. So a barrier or a shuffle behaves as on a GPU, and a missing one shows:
// thread 0 runs ahead to the end of the block before thread 1 has started, reading whatever
// shared memory held before. Kernels without barriers or shuffles (the scheduler is told) run
// their threads as plain calls, in the same order.
//
// Not faithful, by design or by limit: no real parallelism (no data races are found, only
// missing barriers); float arithmetic is the host compiler's (no fused multiply-add unless the
// compiler contracts, no fast-math intrinsics, libm's exp/log instead of CUDA's); __shared__ is a
// static, one copy for all blocks (blocks run one at a time), not cleared between blocks; only
// the warp functions the kernels use exist (__shfl_xor_sync); a lane mask must name every lane
// that reaches the shuffle, and every lane it names must reach it.
#pragma once

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

using std::exp;
using std::fabs;
using std::log;
using std::max;
using std::min;
using std::sqrt;

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

namespace fastdl_emu {

extern dim3 threadIdx, blockIdx, blockDim, gridDim;
int run(dim3 grid, dim3 block, bool with_fibers, const std::function<void()>& fn);
void syncthreads();
uint64_t shfl_xor(unsigned mask, uint64_t bits, int lane_mask);

}  // namespace fastdl_emu

using fastdl_emu::blockDim;
using fastdl_emu::blockIdx;
using fastdl_emu::gridDim;
using fastdl_emu::threadIdx;

inline void __syncthreads() { fastdl_emu::syncthreads(); }

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    (void)width;
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    bits = fastdl_emu::shfl_xor(mask, bits, lane_mask);
    T out;
    std::memcpy(&out, &bits, sizeof(T));
    return out;
}
