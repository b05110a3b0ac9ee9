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
// extents: z n*m, b m
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
// extents: z n*m, b m
FASTDL_INSTANTIATE(bias_relu, (T* z, const T* b, long long n, int m), (z, b, n, m))

template <typename T>
__device__ void bias_sigmoid_impl(T* z, const T* b, long long n, int m) {
    long long total = n * (long long)m;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x)
        z[i] = stable_sigmoid(z[i] + b[i % m]);
}
// extents: z n*m, b m
FASTDL_INSTANTIATE(bias_sigmoid, (T* z, const T* b, long long n, int m), (z, b, n, m))

// mode FASTDL_ACT_RELU:     dh *= (h > 0)   (h is the ReLU's output)
// mode FASTDL_ACT_SIGMOID:  dh *= h (1 - h) (h is the sigmoid's output)
// mode FASTDL_ACT_IDENTITY: dh unchanged    (a plain column sum)
// Grid (ceil(m / 32), parts): block (x, y) sums rows [y * rows, min(n, (y + 1) * rows)) of its 32
// columns into db[y * m + col]. One part (rows = n) gives the column sums; with more, sum_parts
// adds them up. A tall batch needs the parts: one block of 8 threads per column walking 10,000
// rows waits on memory at each row, and the whole GPU runs 1 or 2 such blocks.
template <typename T>
__device__ void grad_colsum_impl(T* dh, const T* h, T* db, long long n, int m, int mode, long long rows) {
    __shared__ T part[8][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    long long first = blockIdx.y * rows, end = min(n, first + rows);
    T acc = T(0);
    if (col < m) {
        for (long long r = first + threadIdx.y; r < end; r += 8) {
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
        db[blockIdx.y * (long long)m + col] = s;
    }
}
// extents: dh n*m, h n*m, db grid.y*m
FASTDL_INSTANTIATE(grad_colsum, (T* dh, const T* h, T* db, long long n, int m, int mode, long long rows),
                   (dh, h, db, n, m, mode, rows))

// db[col] = sum over p of parts[p * m + col], in order p = 0, 1, ... (deterministic).
template <typename T>
__device__ void sum_parts_impl(const T* parts, T* db, int count, int m) {
    for (int col = blockIdx.x * blockDim.x + threadIdx.x; col < m; col += gridDim.x * blockDim.x) {
        T s = T(0);
        for (int p = 0; p < count; ++p) s += parts[p * (long long)m + col];
        db[col] = s;
    }
}
// extents: parts count*m, db m
FASTDL_INSTANTIATE(sum_parts, (const T* parts, T* db, int count, int m), (parts, db, count, m))
