// The book's chapter 6 on the GPU: Dropout's mask from a counter-based hash (the same numbers as
// every other backend: fastdl/backends/contract.py), Batch Normalization's column statistics and
// backward (one block of 32 x 8 threads per 32 columns, reduced in shared memory in a fixed order:
// deterministic, no atomics), and the small in-place updates of weight decay and running averages.
#include "common.cuh"

__device__ __forceinline__ unsigned long long mix64(unsigned long long z) {
    z = (z ^ (z >> 30)) * FASTDL_MIX1;
    z = (z ^ (z >> 27)) * FASTDL_MIX2;
    return z ^ (z >> 31);
}

// mask = uniform(key, i) > ratio for flat index i, y = x * mask.
template <typename T>
__device__ void dropout_impl(T* y, bool* mask, const T* x, double ratio, unsigned long long key, long long size) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size;
         i += (long long)gridDim.x * blockDim.x) {
        double u = (double)(mix64(key + FASTDL_GOLDEN * (unsigned long long)(i + 1)) >> 40) * (1.0 / 16777216.0);
        bool keep = u > ratio;
        mask[i] = keep;
        y[i] = keep ? x[i] : T(0) * x[i];
    }
}
// extents: y size, mask size, x size
FASTDL_INSTANTIATE(dropout, (T* y, bool* mask, const T* x, double ratio, unsigned long long key, long long size),
                   (y, mask, x, ratio, key, size))

// Sum down the rows of this thread's column into the block's shared partials, then thread row 0
// adds the 8 partials in order. Every thread of the block calls it (it holds barriers).
template <typename T>
__device__ T column_sum(T acc, T (*part)[33]) {
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    T s = T(0);
    for (int k = 0; k < 8; ++k) s += part[k][threadIdx.x];
    __syncthreads();                 // the partials are read by all before anyone writes again
    return s;
}

// Per column: mean, var = mean((x - mean)^2), std = sqrt(var + eps); xn = (x - mean) / std,
// y = gamma xn + beta. Grid: ceil(m / 32) blocks of (32, 8).
template <typename T>
__device__ void batchnorm_train_impl(T* y, T* xn, T* std_out, T* mean_out, T* var_out, const T* x,
                                     const T* gamma, const T* beta, T eps, long long n, int m) {
    __shared__ T part[8][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    bool in = col < m;
    T acc = T(0);
    if (in) for (long long r = threadIdx.y; r < n; r += 8) acc += x[r * m + col];
    T mean = column_sum(acc, part) / T(n);
    acc = T(0);
    if (in) for (long long r = threadIdx.y; r < n; r += 8) { T d = x[r * m + col] - mean; acc += d * d; }
    T var = column_sum(acc, part) / T(n);
    T sd = sqrt(var + eps);
    if (!in) return;
    if (threadIdx.y == 0) { mean_out[col] = mean; var_out[col] = var; std_out[col] = sd; }
    for (long long r = threadIdx.y; r < n; r += 8) {
        long long i = r * m + col;
        T v = (x[i] - mean) / sd;
        xn[i] = v;
        y[i] = gamma[col] * v + beta[col];
    }
}
// extents: y n*m, xn n*m, std_out m, mean_out m, var_out m, x n*m, gamma m, beta m
FASTDL_INSTANTIATE(batchnorm_train,
                   (T* y, T* xn, T* std_out, T* mean_out, T* var_out, const T* x, const T* gamma,
                    const T* beta, T eps, long long n, int m),
                   (y, xn, std_out, mean_out, var_out, x, gamma, beta, eps, n, m))

// dbeta = sum dy, dgamma = sum dy xn, dx = gamma / std (dy - (dbeta + xn dgamma) / n).
template <typename T>
__device__ void batchnorm_backward_impl(T* dx, T* dgamma, T* dbeta, const T* dy, const T* xn,
                                        const T* sd, const T* gamma, long long n, int m) {
    __shared__ T part[8][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    bool in = col < m;
    T a = T(0), b = T(0);
    if (in) for (long long r = threadIdx.y; r < n; r += 8) { long long i = r * m + col; a += dy[i]; b += dy[i] * xn[i]; }
    T db = column_sum(a, part);
    T dg = column_sum(b, part);
    if (!in) return;
    if (threadIdx.y == 0) { dbeta[col] = db; dgamma[col] = dg; }
    T g = gamma[col] / sd[col];
    for (long long r = threadIdx.y; r < n; r += 8) {
        long long i = r * m + col;
        dx[i] = g * (dy[i] - (db + xn[i] * dg) / T(n));
    }
}
// extents: dx n*m, dgamma m, dbeta m, dy n*m, xn n*m, sd m, gamma m
FASTDL_INSTANTIATE(batchnorm_backward,
                   (T* dx, T* dgamma, T* dbeta, const T* dy, const T* xn, const T* sd, const T* gamma,
                    long long n, int m),
                   (dx, dgamma, dbeta, dy, xn, sd, gamma, n, m))

template <typename T>
__device__ void batchnorm_inference_impl(T* y, const T* x, const T* gamma, const T* beta, const T* mean,
                                         const T* var, T eps, long long n, int m) {
    long long total = n * (long long)m;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        int j = (int)(i % m);
        y[i] = gamma[j] * ((x[i] - mean[j]) / sqrt(var[j] + eps)) + beta[j];
    }
}
// extents: y n*m, x n*m, gamma m, beta m, mean m, var m
FASTDL_INSTANTIATE(batchnorm_inference,
                   (T* y, const T* x, const T* gamma, const T* beta, const T* mean, const T* var, T eps,
                    long long n, int m),
                   (y, x, gamma, beta, mean, var, eps, n, m))

// avg = momentum avg + (1 - momentum) x;   y += a x.
template <typename T>
__device__ void running_impl(T* avg, const T* x, T momentum, T one_minus_momentum, long long size) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size;
         i += (long long)gridDim.x * blockDim.x)
        avg[i] = momentum * avg[i] + one_minus_momentum * x[i];
}
// extents: avg size, x size
FASTDL_INSTANTIATE(running, (T* avg, const T* x, T momentum, T one_minus_momentum, long long size),
                   (avg, x, momentum, one_minus_momentum, size))

template <typename T>
__device__ void axpy_impl(T* y, const T* x, T a, long long size) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size;
         i += (long long)gridDim.x * blockDim.x)
        y[i] += a * x[i];
}
// extents: y size, x size
FASTDL_INSTANTIATE(axpy, (T* y, const T* x, T a, long long size), (y, x, a, size))
