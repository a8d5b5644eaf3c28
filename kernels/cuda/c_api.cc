#include "cuda/c_api.h"

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/launchers.h"

namespace {

constexpr int kInvalidArgument = 1;
constexpr int kCudaError = 2;
constexpr int kOtherError = 3;

thread_local std::string last_error;

// What robe_cuda_plan_create validated once: the hash tables and, for LMA, the offsets.
struct Plan {
  robe::cuda::HashTables tables;
  std::vector<int64_t> offsets;  // empty for ROBE
  int64_t num_keys = 0;
};

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

const Plan& PlanOf(const void* plan) {
  if (plan == nullptr) throw std::invalid_argument("ai.robe CUDA: no plan (robe_cuda_plan_create)");
  return *static_cast<const Plan*>(plan);
}

}  // namespace

extern "C" {

int robe_cuda_plan_create(const int64_t* a1, const int64_t* a2, const int64_t* c, int64_t num_features,
                          const int64_t* g1, const int64_t* g2, int64_t num_blocks, const int64_t* offsets,
                          int64_t num_keys, void** plan) {
  return Run([&] {
    auto made = std::make_unique<Plan>();
    made->tables = robe::cuda::MakeHashTables({a1, a2, c, num_features, g1, g2, num_blocks});
    if (offsets != nullptr) {
      robe::cuda::CheckOffsets(offsets, num_features, num_keys);
      made->offsets.assign(offsets, offsets + num_features + 1);
      made->num_keys = num_keys;
    }
    *plan = made.release();
    return cudaSuccess;
  });
}

void robe_cuda_plan_destroy(void* plan) { delete static_cast<Plan*>(plan); }

int robe_cuda_robe_embedding(const void* plan, const int64_t* ids, int64_t batch, const float* memory,
                             int64_t memory_size, int64_t dim, int64_t block_size, float* out, void* stream) {
  return Run([&] {
    const robe::cuda::RobeArgs args{ids, batch, memory, memory_size, dim, block_size, out};
    return robe::cuda::LaunchRobeEmbedding(args, PlanOf(plan).tables, static_cast<cudaStream_t>(stream));
  });
}

int robe_cuda_lma_embedding(const void* plan, const int64_t* ids, int64_t batch, const float* memory,
                            int64_t memory_size, int64_t dim, int64_t block_size, const int64_t* keys,
                            const uint8_t* signatures, int64_t num_minhashes, int64_t keys_per_block, float* out,
                            void* stream) {
  return Run([&] {
    const Plan& p = PlanOf(plan);
    if (p.offsets.empty()) throw std::invalid_argument("ai.robe CUDA: the plan was made without LMA offsets");
    const robe::cuda::LmaArgs args{{ids, batch, memory, memory_size, dim, block_size, out}, keys, signatures,
                                   p.num_keys, num_minhashes, p.offsets.data(), keys_per_block};
    return robe::cuda::LaunchLmaEmbedding(args, p.tables, static_cast<cudaStream_t>(stream));
  });
}

int robe_cuda_vocab_lookup(const int64_t* ids, int64_t batch, int64_t num_features, const int64_t* keys,
                           int64_t num_keys, const int64_t* offsets, int64_t* out, void* stream) {
  const robe::cuda::VocabArgs args{ids, batch, num_features, keys, num_keys, offsets, out};
  return Run([&] { return robe::cuda::LaunchVocabLookup(args, static_cast<cudaStream_t>(stream)); });
}

const char* robe_cuda_last_error(void) { return last_error.c_str(); }

}  // extern "C"
