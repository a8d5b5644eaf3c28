// Plain C++ launchers of the ai.robe CUDA kernels: device pointers, sizes and a stream, no ONNX Runtime.
// The ORT kernels (cuda_ops.cc), the ctypes/PyTorch bridge (c_api.cc, kernels/torch_ext.py) and the
// standalone GPU check (kernels/gpu_check.py) all call these.
//
// Semantics match kernels/reference.py bit for bit for valid ids. The launchers never synchronise the
// host with the stream, so they cannot report bad ids: an id outside [0, 2^62) gives an embedding of NaN
// (RobeEmbedding, LmaEmbedding) or the feature's OOV row (VocabLookup), and never an out-of-bounds read.
// Sizes and host arrays are checked on the host: std::invalid_argument names the problem.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace robe::cuda {

// The hash coefficients and offsets travel to the GPU inside the kernel parameters (no allocation, no
// copy), which bounds the number of features and of blocks of a CUDA lookup.
inline constexpr int64_t kMaxFeatures = 128;
inline constexpr int64_t kMaxBlocks = 128;

// Host arrays of hash version 2 coefficients (int64, each in [1, 2^31 - 2]).
struct HashArrays {
  const int64_t* a1;  // [num_features]
  const int64_t* a2;
  const int64_t* c;
  int64_t num_features;
  const int64_t* g1;  // [num_blocks]
  const int64_t* g2;
  int64_t num_blocks;
};

// The coefficients, validated once (MakeHashTables) and then passed by value to every launch.
struct HashTables {
  uint32_t feature[3][kMaxFeatures];  // a1, a2, c
  uint32_t block[2][kMaxBlocks];      // g1, g2
  int64_t num_features;
  int64_t num_blocks;
};

// Throws std::invalid_argument naming the problem (counts out of range, a coefficient outside [1, P-1]).
HashTables MakeHashTables(const HashArrays& arrays);
// Throws std::invalid_argument unless offsets are num_features + 1 non-decreasing values from 0 to num_keys.
void CheckOffsets(const int64_t* offsets, int64_t num_features, int64_t num_keys);

struct RobeArgs {
  const int64_t* ids;  // device [batch, tables.num_features]
  int64_t batch;
  const float* memory;  // device [memory_size]
  int64_t memory_size;
  int64_t dim;         // dim / block_size == tables.num_blocks
  int64_t block_size;
  float* out;  // device [batch, num_features, dim]
};

struct LmaArgs {
  RobeArgs robe;
  const int64_t* keys;        // device [num_keys], sorted within each feature
  const uint8_t* signatures;  // device [num_keys, num_minhashes]
  int64_t num_keys;
  int64_t num_minhashes;      // in [keys_per_block, 255]
  const int64_t* offsets;     // HOST [num_features + 1], already checked (CheckOffsets)
  int64_t keys_per_block;     // in [1, 6]
};

struct VocabArgs {
  const int64_t* ids;  // device [batch, num_features]
  int64_t batch;
  int64_t num_features;
  const int64_t* keys;     // device [num_keys]
  int64_t num_keys;
  const int64_t* offsets;  // HOST [num_features + 1]
  int64_t* out;            // device [batch, num_features]
};

// Each enqueues its kernel on `stream` and returns cudaGetLastError(); an empty batch launches nothing.
// The embedding launchers check the shapes of their arguments, never the tables again.
cudaError_t LaunchRobeEmbedding(const RobeArgs& args, const HashTables& tables, cudaStream_t stream);
cudaError_t LaunchLmaEmbedding(const LmaArgs& args, const HashTables& tables, cudaStream_t stream);
cudaError_t LaunchVocabLookup(const VocabArgs& args, cudaStream_t stream);

}  // namespace robe::cuda
