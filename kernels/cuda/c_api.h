// C ABI over the launchers (launchers.h) for ctypes and the PyTorch extension: plain pointers and
// integers, so callers built with another compiler or C++ ABI can link it. Each function returns 0 on
// success, else an error code whose message robe_cuda_last_error() gives (thread-local).
// `stream` is a cudaStream_t (0 = the legacy default stream); `offsets` are host pointers.
#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ROBE_C_API __attribute__((visibility("default")))

ROBE_C_API int robe_cuda_robe_embedding(const int64_t* ids, int64_t batch, int64_t num_features, const int64_t* a1,
                                        const int64_t* a2, const int64_t* b, const int64_t* c, const float* memory,
                                        int64_t memory_size, int64_t dim, int64_t block_size, float* out, void* stream);

ROBE_C_API int robe_cuda_lma_embedding(const int64_t* ids, int64_t batch, int64_t num_features, const int64_t* a1,
                                       const int64_t* a2, const int64_t* b, const int64_t* c, const float* memory,
                                       int64_t memory_size, int64_t dim, int64_t block_size, const int64_t* keys,
                                       const int64_t* signatures, int64_t num_keys, const int64_t* offsets,
                                       int64_t keys_per_block, float* out, void* stream);

ROBE_C_API int robe_cuda_vocab_lookup(const int64_t* ids, int64_t batch, int64_t num_features, const int64_t* keys,
                                      int64_t num_keys, const int64_t* offsets, int64_t* out, void* stream);

ROBE_C_API const char* robe_cuda_last_error(void);

#ifdef __cplusplus
}
#endif
