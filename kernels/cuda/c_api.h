// C ABI over the launchers (launchers.h) for ctypes and the PyTorch extension: plain pointers and
// integers, so callers built with another compiler or C++ ABI can link it. Each function returns 0 on
// success, else an error code whose message robe_cuda_last_error() gives (thread-local).
// `stream` is a cudaStream_t (0 = the legacy default stream); `offsets` are host pointers.
//
// An embedding is launched through a plan: its hash tables (and, for LMA, its offsets) validated ONCE by
// robe_cuda_plan_create and reused by every launch, so a launch checks only its shapes.
#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ROBE_C_API __attribute__((visibility("default")))

// a1, a2, c: [num_features]; g1, g2: [num_blocks]; offsets: NULL (ROBE) or [num_features + 1] (LMA).
ROBE_C_API int robe_cuda_plan_create(const int64_t* a1, const int64_t* a2, const int64_t* c, int64_t num_features,
                                     const int64_t* g1, const int64_t* g2, int64_t num_blocks,
                                     const int64_t* offsets, int64_t num_keys, void** plan);
ROBE_C_API void robe_cuda_plan_destroy(void* plan);

ROBE_C_API int robe_cuda_robe_embedding(const void* plan, const int64_t* ids, int64_t batch, const float* memory,
                                        int64_t memory_size, int64_t dim, int64_t block_size, float* out,
                                        void* stream);

ROBE_C_API int robe_cuda_lma_embedding(const void* plan, const int64_t* ids, int64_t batch, const float* memory,
                                       int64_t memory_size, int64_t dim, int64_t block_size, const int64_t* keys,
                                       const uint8_t* signatures, int64_t num_minhashes, int64_t keys_per_block,
                                       float* out, void* stream);

ROBE_C_API int robe_cuda_vocab_lookup(const int64_t* ids, int64_t batch, int64_t num_features, const int64_t* keys,
                                      int64_t num_keys, const int64_t* offsets, int64_t* out, void* stream);

ROBE_C_API const char* robe_cuda_last_error(void);

#ifdef __cplusplus
}
#endif
