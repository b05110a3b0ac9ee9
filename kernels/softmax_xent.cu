// Softmax + cross-entropy, one warp per row (any number of classes: lanes stride the row).
//   loss_i = log(sum_j exp(z_ij - max_i)) - (z_i,t_i - max_i)      (log-sum-exp: exact for
//   confident mistakes, no log(p + 1e-7));
//   mode FASTDL_SOFTMAX_PROBS: write probs;  FASTDL_SOFTMAX_GRAD: write dz = (softmax - onehot) / N.
// Per-row losses go to row_loss; their mean is taken on the device by the caller, so nothing
// returns to the host. Labels t are int64 class indices in [0, C), validated on the host; a kernel
// cannot raise, so a row whose label is outside that range reads nothing at it and gets NaN (its
// loss, and in GRAD mode its gradient): the mean loss is NaN, which the host sees.
#include "common.cuh"

template <typename T>
__device__ void softmax_xent_impl(const T* z, const long long* t, T* out, T* row_loss,
                                  long long n, int c, int mode) {
    long long row = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x & 31;
    if (row >= n) return;   // whole warps exit together: rows are warp-aligned
    const T* zr = z + row * c;
    T* o = out + row * c;
    T mx = zr[0];
    for (int j = lane; j < c; j += 32) mx = max(mx, zr[j]);
    mx = warp_max(mx);
    T s = T(0);
    for (int j = lane; j < c; j += 32) s += exp(zr[j] - mx);
    s = warp_sum(s);
    T inv = T(1) / s;
    long long label = t[row];
    bool bad = label < 0 || label >= c;
    T scale = mode == FASTDL_SOFTMAX_GRAD ? T(1) / T(n) : T(1);
    for (int j = lane; j < c; j += 32) {
        T p = exp(zr[j] - mx) * inv;
        if (mode == FASTDL_SOFTMAX_GRAD && j == label) p -= T(1);
        o[j] = bad && mode == FASTDL_SOFTMAX_GRAD ? nan_of<T>() : p * scale;
    }
    if (lane == 0) row_loss[row] = bad ? nan_of<T>() : log(s) - (zr[label] - mx);
}
// extents: z n*c, t n, out n*c, row_loss n
FASTDL_INSTANTIATE(softmax_xent,
                   (const T* z, const long long* t, T* out, T* row_loss, long long n, int c, int mode),
                   (z, t, out, row_loss, n, c, mode))

// dz = (probs - onehot(t)) / N, from stored probabilities.
template <typename T>
__device__ void softmax_grad_impl(const T* probs, const long long* t, T* dz, long long n, int c) {
    long long total = n * (long long)c;
    T inv_n = T(1) / T(n);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        long long r = i / c;
        int j = (int)(i - r * c);
        long long label = t[r];
        dz[i] = label < 0 || label >= c ? nan_of<T>() : (probs[i] - (j == label ? T(1) : T(0))) * inv_n;
    }
}
// extents: probs n*c, t n, dz n*c
FASTDL_INSTANTIATE(softmax_grad, (const T* probs, const long long* t, T* dz, long long n, int c),
                   (probs, t, dz, n, c))

// out[r, :] = src[clip(idx[r]), :] (a batch gathered from the training set, on the device), the
// index clipped into 0 .. rows - 1 as NumPy's take(mode="clip") does: no index reads outside src.
// For float rows (T), and through the two wrappers below byte-coded pixels and int64 labels (d = 1);
// the host refuses rows = 0.
template <typename E>
__device__ void gather_rows_impl(E* out, const E* src, const long long* idx, long long n, long long d, long long rows) {
    long long total = n * d;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        long long r = i / d;
        long long k = idx[r];
        k = k < 0 ? 0 : (k >= rows ? rows - 1 : k);
        out[i] = src[k * d + (i - r * d)];
    }
}
// extents: out n*d, src rows*d, idx n
FASTDL_INSTANTIATE(gather_rows, (T* out, const T* src, const long long* idx, long long n, long long d, long long rows),
                   (out, src, idx, n, d, rows))
template <typename T>
__device__ void gather_bytes_impl(unsigned char* out, const unsigned char* src, const long long* idx, long long n,
                                  long long d, long long rows) {
    gather_rows_impl<unsigned char>(out, src, idx, n, d, rows);
}
// extents: out n*d, src rows*d, idx n
FASTDL_INSTANTIATE(gather_bytes, (unsigned char* out, const unsigned char* src, const long long* idx, long long n,
                                  long long d, long long rows), (out, src, idx, n, d, rows))
template <typename T>
__device__ void gather_labels_impl(long long* out, const long long* src, const long long* idx, long long n,
                                   long long d, long long rows) {
    gather_rows_impl<long long>(out, src, idx, n, d, rows);
}
// extents: out n*d, src rows*d, idx n
FASTDL_INSTANTIATE(gather_labels, (long long* out, const long long* src, const long long* idx, long long n,
                                   long long d, long long rows), (out, src, idx, n, d, rows))

// out[i] = codes[i] / scale: byte-coded pixels (fastdl.ByteImages) to floats, with the IEEE
// division the host's decode does (the sources are compiled without fast math).
template <typename T>
__device__ void decode_bytes_impl(T* out, const unsigned char* codes, T scale, long long total) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        out[i] = T(codes[i]) / scale;
    }
}
// extents: out total, codes total
FASTDL_INSTANTIATE(decode_bytes, (T* out, const unsigned char* codes, T scale, long long total),
                   (out, codes, scale, total))

// out[0] = mean(x[0:n]) in one block: each thread sums a stride of x, then the block adds the
// partials in a fixed tree (deterministic). The fused step's loss is written here rather than by
// CuPy's mean, whose reduction may take scratch memory from the pool, which a captured CUDA graph
// cannot own. Launch with exactly FASTDL_MEAN_THREADS threads (contract.py's MEAN_THREADS) and one block.
template <typename T>
__device__ void mean_of_impl(const T* x, T* out, long long n) {
    __shared__ T part[FASTDL_MEAN_THREADS];
    T acc = T(0);
    for (long long i = threadIdx.x; i < n; i += FASTDL_MEAN_THREADS) acc += x[i];
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int half = FASTDL_MEAN_THREADS / 2; half > 0; half >>= 1) {
        if (threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = part[0] / T(n);
}
// extents: x n, out 1
FASTDL_INSTANTIATE(mean_of, (const T* x, T* out, long long n), (x, out, n))
