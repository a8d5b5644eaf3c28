#include "cuda/c_api.h"

#include <stdexcept>
#include <string>

#include "cuda/launchers.h"

namespace {

constexpr int kInvalidArgument = 1;
constexpr int kCudaError = 2;
constexpr int kOtherError = 3;

thread_local std::string last_error;

template <typename Launch>
int Run(Launch&& launch) noexcept {
  try {
    const cudaError_t status = launch();
    if (status == cudaSuccess) return 0;
    last_error = std::string("ai.robe CUDA: launch failed: ") + cudaGetErrorString(status);
    return kCudaError;
  } catch (const std::invalid_argument& e) {
    last_error = e.what();
    return kInvalidArgument;
  } catch (const std::exception& e) {
    last_error = e.what();
    return kOtherError;
  }
}

}  // namespace

extern "C" {

int robe_cuda_robe_embedding(const int64_t* ids, int64_t batch, int64_t num_features, const int64_t* a1,
                             const int64_t* a2, const int64_t* b, const int64_t* c, const float* memory,
                             int64_t memory_size, int64_t dim, int64_t block_size, float* out, void* stream) {
  const robe::cuda::RobeArgs args{ids, batch, num_features, {a1, a2, b, c}, memory, memory_size, dim, block_size, out};
  return Run([&] { return robe::cuda::LaunchRobeEmbedding(args, static_cast<cudaStream_t>(stream)); });
}

int robe_cuda_lma_embedding(const int64_t* ids, int64_t batch, int64_t num_features, const int64_t* a1,
                            const int64_t* a2, const int64_t* b, const int64_t* c, const float* memory,
                            int64_t memory_size, int64_t dim, int64_t block_size, const int64_t* keys,
                            const int64_t* signatures, int64_t num_keys, const int64_t* offsets,
                            int64_t keys_per_block, float* out, void* stream) {
  const robe::cuda::LmaArgs args{{ids, batch, num_features, {a1, a2, b, c}, memory, memory_size, dim, block_size, out},
                                 keys, signatures, num_keys, offsets, keys_per_block};
  return Run([&] { return robe::cuda::LaunchLmaEmbedding(args, static_cast<cudaStream_t>(stream)); });
}

int robe_cuda_vocab_lookup(const int64_t* ids, int64_t batch, int64_t num_features, const int64_t* keys,
                           int64_t num_keys, const int64_t* offsets, int64_t* out, void* stream) {
  const robe::cuda::VocabArgs args{ids, batch, num_features, keys, num_keys, offsets, out};
  return Run([&] { return robe::cuda::LaunchVocabLookup(args, static_cast<cudaStream_t>(stream)); });
}

const char* robe_cuda_last_error(void) { return last_error.c_str(); }

}  // extern "C"
