// Bias + activation forward (in place), and activation backward fused with the column sum that
// is the bias gradient of the Affine layer below. Correct for any N and width.
//
// Layout: row-major (N, M) matrices, bias (M,). The column sums use a (32 x 8) block per 32
// columns: threads stride down the rows, then reduce in shared memory in a fixed order, so the
// result is deterministic (no atomics).
#include "common.cuh"

template <typename T>
__device__ void add_bias_impl(T* z, const T* b, long long n, int m) {
    long long total = n * (long long)m;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x)
        z[i] += b[i % m];
}
FASTDL_INSTANTIATE(add_bias, (T* z, const T* b, long long n, int m), (z, b, n, m))

template <typename T>
__device__ void bias_relu_impl(T* z, const T* b, long long n, int m) {
    long long total = n * (long long)m;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        T v = z[i] + b[i % m];
        z[i] = v > T(0) ? v : T(0);
    }
}
FASTDL_INSTANTIATE(bias_relu, (T* z, const T* b, long long n, int m), (z, b, n, m))

template <typename T>
__device__ void bias_sigmoid_impl(T* z, const T* b, long long n, int m) {
    long long total = n * (long long)m;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x)
        z[i] = stable_sigmoid(z[i] + b[i % m]);
}
FASTDL_INSTANTIATE(bias_sigmoid, (T* z, const T* b, long long n, int m), (z, b, n, m))

// mode FASTDL_ACT_RELU:     dh *= (h > 0)   (h is the ReLU's output)
// mode FASTDL_ACT_SIGMOID:  dh *= h (1 - h) (h is the sigmoid's output)
// mode FASTDL_ACT_IDENTITY: dh unchanged    (a plain column sum)
template <typename T>
__device__ void grad_colsum_impl(T* dh, const T* h, T* db, long long n, int m, int mode) {
    __shared__ T part[8][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    T acc = T(0);
    if (col < m) {
        for (long long r = threadIdx.y; r < n; r += 8) {
            long long i = r * m + col;
            T v = dh[i];
            if (mode == FASTDL_ACT_RELU) v = h[i] > T(0) ? v : T(0);
            else if (mode == FASTDL_ACT_SIGMOID) v = v * h[i] * (T(1) - h[i]);
            if (mode != FASTDL_ACT_IDENTITY) dh[i] = v;
            acc += v;
        }
    }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < m) {
        T s = T(0);
        for (int k = 0; k < 8; ++k) s += part[k][threadIdx.x];
        db[col] = s;
    }
}
FASTDL_INSTANTIATE(grad_colsum, (T* dh, const T* h, T* db, long long n, int m, int mode),
                   (dh, h, db, n, m, mode))
