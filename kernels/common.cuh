// Shared helpers of fastdl's CUDA kernels. Every kernel is written once as a template and
// instantiated for float and double under extern "C" names ending in _f32 / _f64, so CuPy
// (NVRTC) finds them by plain name and nvcc compiles every instantiation in CI.
#pragma once

// The mode codes (FASTDL_ACT_*, FASTDL_SOFTMAX_*) are generated from fastdl/backends/contract.py
// and put in front of these sources by fastdl.cuda_sources: Python and CUDA read one definition.
#ifndef FASTDL_ACT_RELU
#error "compile the kernels through fastdl.cuda_sources (or -include its generated defines)"
#endif

// PARAMS is the parameter list written with T; each namespace binds T to one type.
#define FASTDL_INSTANTIATE(NAME, PARAMS, ARGS)                                               \
    namespace fastdl_f32 { typedef float T;                                                 \
        extern "C" __global__ void NAME##_f32 PARAMS { NAME##_impl<T> ARGS; } }             \
    namespace fastdl_f64 { typedef double T;                                                \
        extern "C" __global__ void NAME##_f64 PARAMS { NAME##_impl<T> ARGS; } }

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

template <typename T>
__device__ __forceinline__ T warp_max(T v) {
    for (int off = 16; off > 0; off >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

// A quiet NaN of type T (IEEE 0/0; the sources compile without fast math): what a kernel writes
// where it cannot compute and cannot raise (a label outside the classes).
template <typename T>
__device__ __forceinline__ T nan_of() {
    volatile T zero = T(0);
    return zero / zero;
}

// exp(-|x|) never overflows; both branches are the same function.
template <typename T>
__device__ __forceinline__ T stable_sigmoid(T x) {
    T e = exp(-fabs(x));
    return x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}
