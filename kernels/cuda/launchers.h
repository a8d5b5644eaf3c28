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
// copy), which bounds the number of features of a CUDA lookup.
inline constexpr int64_t kMaxFeatures = 128;

// Host arrays of per-feature hash coefficients (int64, each in [1, 2^31 - 2]).
struct HashArrays {
  const int64_t* a1;
  const int64_t* a2;
  const int64_t* b;
  const int64_t* c;
};

struct RobeArgs {
  const int64_t* ids;  // device [batch, num_features]
  int64_t batch;
  int64_t num_features;
  HashArrays hash;     // host [num_features] each
  const float* memory;  // device [memory_size]
  int64_t memory_size;
  int64_t dim;
  int64_t block_size;
  float* out;  // device [batch, num_features, dim]
};

struct LmaArgs {
  RobeArgs robe;
  const int64_t* keys;        // device [num_keys], sorted within each feature
  const int64_t* signatures;  // device [num_keys]
  int64_t num_keys;
  const int64_t* offsets;     // HOST [num_features + 1], non-decreasing from 0 to num_keys
  int64_t keys_per_block;     // in [1, 15]
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
cudaError_t LaunchRobeEmbedding(const RobeArgs& args, cudaStream_t stream);
cudaError_t LaunchLmaEmbedding(const LmaArgs& args, cudaStream_t stream);
cudaError_t LaunchVocabLookup(const VocabArgs& args, cudaStream_t stream);

}  // namespace robe::cuda
