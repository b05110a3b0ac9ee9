// The launch scheduler behind cuda_host.h (see there for what it does and does not model).
#include "cuda_host.h"

namespace fastdl_emu {

dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace {

enum Wait { RUNNING, AT_SYNC, AT_SHFL, DONE };

struct Fiber {
    ucontext_t ctx;
    Wait wait = RUNNING;
    dim3 idx;
    unsigned mask = 0;
    int src_lane = 0;
    uint64_t value = 0, result = 0;
};

constexpr size_t STACK = 64 * 1024;
std::vector<Fiber> fibers;
std::vector<std::vector<char>> stacks;
ucontext_t scheduler;
Fiber* current = nullptr;
const std::function<void()>* body = nullptr;
std::string error;
bool fibers_on = false;

void yield(Wait w) {
    current->wait = w;
    swapcontext(&current->ctx, &scheduler);
}

void entry(int i) {
    (*body)();
    fibers[i].wait = DONE;
    // returning resumes uc_link: the scheduler
}

bool fail(const std::string& what) {
    if (error.empty()) error = what;
    return false;
}

// Every live fiber is at a barrier or done: release what can be released. False on a deadlock.
bool release(unsigned nthreads) {
    bool any_sync = false, any_shfl = false;
    for (unsigned i = 0; i < nthreads; ++i) {
        any_sync |= fibers[i].wait == AT_SYNC;
        any_shfl |= fibers[i].wait == AT_SHFL;
    }
    if (any_shfl) {
        for (unsigned w = 0; w < nthreads; w += 32) {
            unsigned end = std::min(nthreads, w + 32);
            bool waiting = false;
            for (unsigned i = w; i < end; ++i) waiting |= fibers[i].wait == AT_SHFL;
            if (!waiting) continue;
            for (unsigned i = w; i < end; ++i) {
                Fiber& f = fibers[i];
                unsigned lane_bit = 1u << (i - w);
                if (f.wait == AT_SHFL) {
                    if (!(f.mask & lane_bit)) return fail("a lane reached __shfl_xor_sync outside its own mask");
                    unsigned src = w + (unsigned)f.src_lane;
                    if (src >= end || fibers[src].wait != AT_SHFL || !(f.mask & (1u << f.src_lane)))
                        return fail("__shfl_xor_sync read a lane that did not reach the shuffle");
                } else {
                    for (unsigned j = w; j < end; ++j)
                        if (fibers[j].wait == AT_SHFL && (fibers[j].mask & lane_bit))
                            return fail("a lane named in a shuffle's mask did not reach the shuffle");
                }
            }
            for (unsigned i = w; i < end; ++i)
                if (fibers[i].wait == AT_SHFL) fibers[i].result = fibers[w + (unsigned)fibers[i].src_lane].value;
            for (unsigned i = w; i < end; ++i)
                if (fibers[i].wait == AT_SHFL) fibers[i].wait = RUNNING;
        }
        return true;
    }
    if (any_sync) {
        for (unsigned i = 0; i < nthreads; ++i)
            if (fibers[i].wait == DONE) return fail("__syncthreads() not reached by every thread of the block");
        for (unsigned i = 0; i < nthreads; ++i) fibers[i].wait = RUNNING;
        return true;
    }
    return true;
}

}  // namespace

void syncthreads() {
    if (!fibers_on) { fail("__syncthreads() in a kernel launched without fibers"); return; }
    yield(AT_SYNC);
}

uint64_t shfl_xor(unsigned mask, uint64_t bits, int lane_mask) {
    if (!fibers_on) { fail("__shfl_xor_sync in a kernel launched without fibers"); return bits; }
    unsigned linear = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    current->mask = mask;
    current->src_lane = (int)((linear % 32) ^ (unsigned)lane_mask) ;
    current->value = bits;
    yield(AT_SHFL);
    return current->result;
}

static dim3 unflatten(unsigned i, dim3 d) {
    return dim3{i % d.x, (i / d.x) % d.y, i / (d.x * d.y)};
}

// Runs `fn` as every thread of every block; returns 0, or 1 with the reason in last_error().
int run(dim3 grid, dim3 block, bool with_fibers, const std::function<void()>& fn) {
    error.clear();
    gridDim = grid;
    blockDim = block;
    unsigned nthreads = block.x * block.y * block.z, nblocks = grid.x * grid.y * grid.z;
    body = &fn;
    fibers_on = with_fibers;
    if (!with_fibers) {
        for (unsigned b = 0; b < nblocks && error.empty(); ++b) {
            blockIdx = unflatten(b, grid);
            for (unsigned i = 0; i < nthreads; ++i) {
                threadIdx = unflatten(i, block);
                fn();
            }
        }
        return error.empty() ? 0 : 1;
    }
    fibers.assign(nthreads, Fiber());
    if (stacks.size() < nthreads) stacks.resize(nthreads, std::vector<char>(STACK));
    for (unsigned b = 0; b < nblocks && error.empty(); ++b) {
        blockIdx = unflatten(b, grid);
        for (unsigned i = 0; i < nthreads; ++i) {
            Fiber& f = fibers[i];
            f = Fiber();
            f.idx = unflatten(i, block);
            getcontext(&f.ctx);
            f.ctx.uc_stack.ss_sp = stacks[i].data();
            f.ctx.uc_stack.ss_size = STACK;
            f.ctx.uc_link = &scheduler;
            makecontext(&f.ctx, (void (*)())entry, 1, (int)i);
        }
        for (;;) {
            bool live = false;
            for (unsigned i = 0; i < nthreads && error.empty(); ++i) {
                if (fibers[i].wait != RUNNING) continue;
                live = true;
                current = &fibers[i];
                threadIdx = fibers[i].idx;
                swapcontext(&scheduler, &fibers[i].ctx);
            }
            if (!error.empty()) break;
            bool all_done = true;
            for (unsigned i = 0; i < nthreads; ++i) all_done &= fibers[i].wait == DONE;
            if (all_done) break;
            if (!release(nthreads)) break;
            (void)live;
        }
    }
    fibers_on = false;
    // A failed block may leave fibers suspended mid-kernel: they are simply dropped (their
    // stacks are ours; nothing they hold needs unwinding in these kernels).
    return error.empty() ? 0 : 1;
}

}  // namespace fastdl_emu

extern "C" const char* fastdl_emu_last_error() { return fastdl_emu::error.c_str(); }
