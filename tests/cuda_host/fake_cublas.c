/* cuBLAS's handle and GEMM entry points on host memory (column-major, as cuBLAS), so the ctypes
 * binding of fastdl/backends/cublas_direct.py runs on the CPU: argument order and types,
 * transposes, leading dimensions, and the workspace set again after every change of stream. */
#include <stddef.h>

typedef struct { void* stream; void* workspace; size_t bytes; int streams_set; } Handle;
static Handle handle;

int cublasCreate_v2(void** h) { *h = &handle; return 0; }
int cublasSetStream_v2(void* h, void* s) {
    Handle* x = (Handle*)h;
    x->stream = s;
    x->workspace = NULL;        /* as cuBLAS: back to its own pool, which would allocate */
    x->bytes = 0;
    x->streams_set++;
    return 0;
}
int cublasSetWorkspace_v2(void* h, void* w, size_t bytes) {
    ((Handle*)h)->workspace = w;
    ((Handle*)h)->bytes = bytes;
    return 0;
}
void* fake_stream(void) { return handle.stream; }
size_t fake_workspace_bytes(void) { return handle.bytes; }
int fake_streams_set(void) { return handle.streams_set; }

/* status 14 (CUBLAS_STATUS_INTERNAL_ERROR) where the workspace is cuBLAS's own pool */
#define GEMM(NAME, T)                                                                         \
    int NAME(void* h, int ta, int tb, int m, int n, int k, const T* alpha, const T* A, int lda, \
             const T* B, int ldb, const T* beta, T* C, int ldc) {                             \
        if (((Handle*)h)->workspace == NULL) return 14;                                       \
        for (int j = 0; j < n; ++j)                                                           \
            for (int i = 0; i < m; ++i) {                                                     \
                T acc = 0;                                                                    \
                for (int p = 0; p < k; ++p)                                                   \
                    acc += (ta ? A[p + (size_t)i * lda] : A[i + (size_t)p * lda]) *           \
                           (tb ? B[j + (size_t)p * ldb] : B[p + (size_t)j * ldb]);            \
                C[i + (size_t)j * ldc] = *alpha * acc + (*beta == 0 ? 0 : *beta * C[i + (size_t)j * ldc]); \
            }                                                                                 \
        return 0;                                                                             \
    }
GEMM(cublasSgemm_v2, float)
GEMM(cublasDgemm_v2, double)
