// Optimizer updates, one element per thread (grid-stride), in place on the parameter and its
// state. Hyperparameters arrive in the parameter's type. Same formulas as the NumPy reference.
#include "common.cuh"

#define FASTDL_LOOP for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size; \
                         i += (long long)gridDim.x * blockDim.x)

template <typename T>
__device__ void sgd_impl(T* p, const T* g, T lr, long long size) {
    FASTDL_LOOP p[i] -= lr * g[i];
}
// extents: p size, g size
FASTDL_INSTANTIATE(sgd, (T* p, const T* g, T lr, long long size), (p, g, lr, size))

template <typename T>
__device__ void momentum_impl(T* p, const T* g, T* v, T lr, T mu, long long size) {
    FASTDL_LOOP {
        T vi = mu * v[i] - lr * g[i];
        v[i] = vi;
        p[i] += vi;
    }
}
// extents: p size, g size, v size
FASTDL_INSTANTIATE(momentum, (T* p, const T* g, T* v, T lr, T mu, long long size), (p, g, v, lr, mu, size))

// The book's order: the parameters move with the previous velocity, then it is updated.
template <typename T>
__device__ void nesterov_impl(T* p, const T* g, T* v, T lr, T mu, T mu_sq, T lr_ahead, long long size) {
    FASTDL_LOOP {
        T pi = p[i] + mu_sq * v[i];
        p[i] = pi - lr_ahead * g[i];
        v[i] = mu * v[i] - lr * g[i];
    }
}
// extents: p size, g size, v size
FASTDL_INSTANTIATE(nesterov, (T* p, const T* g, T* v, T lr, T mu, T mu_sq, T lr_ahead, long long size),
                   (p, g, v, lr, mu, mu_sq, lr_ahead, size))

template <typename T>
__device__ void adagrad_impl(T* p, const T* g, T* h, T lr, T eps, long long size) {
    FASTDL_LOOP {
        T hi = h[i] + g[i] * g[i];
        h[i] = hi;
        p[i] -= lr * g[i] / (sqrt(hi) + eps);
    }
}
// extents: p size, g size, h size
FASTDL_INSTANTIATE(adagrad, (T* p, const T* g, T* h, T lr, T eps, long long size), (p, g, h, lr, eps, size))

template <typename T>
__device__ void rmsprop_impl(T* p, const T* g, T* h, T lr, T decay, T one_minus_decay, T eps, long long size) {
    FASTDL_LOOP {
        T hi = decay * h[i] + one_minus_decay * g[i] * g[i];
        h[i] = hi;
        p[i] -= lr * g[i] / (sqrt(hi) + eps);
    }
}
// extents: p size, g size, h size
FASTDL_INSTANTIATE(rmsprop, (T* p, const T* g, T* h, T lr, T decay, T one_minus_decay, T eps, long long size),
                   (p, g, h, lr, decay, one_minus_decay, eps, size))

// m and v move by (1 - beta) formed in float64 on the host and rounded once (as the book's
// Python floats are); lr_t carries the bias correction.
template <typename T>
__device__ void adam_impl(T* p, const T* g, T* m, T* v, T lr_t, T omb1, T omb2, T eps, long long size) {
    FASTDL_LOOP {
        T mi = m[i] + omb1 * (g[i] - m[i]);
        T vi = v[i] + omb2 * (g[i] * g[i] - v[i]);
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr_t * mi / (sqrt(vi) + eps);
    }
}
// extents: p size, g size, m size, v size
FASTDL_INSTANTIATE(adam, (T* p, const T* g, T* m, T* v, T lr_t, T omb1, T omb2, T eps, long long size),
                   (p, g, m, v, lr_t, omb1, omb2, eps, size))

// The same with lr_t read from device memory when the kernel runs: a CUDA graph replays its
// launches with the arguments they were captured with, and Adam's step size changes every step.
template <typename T>
__device__ void adam_at_impl(T* p, const T* g, T* m, T* v, const T* lr_t, T omb1, T omb2, T eps, long long size) {
    adam_impl<T>(p, g, m, v, *lr_t, omb1, omb2, eps, size);
}
// extents: p size, g size, m size, v size, lr_t 1
FASTDL_INSTANTIATE(adam_at, (T* p, const T* g, T* m, T* v, const T* lr_t, T omb1, T omb2, T eps, long long size),
                   (p, g, m, v, lr_t, omb1, omb2, eps, size))
