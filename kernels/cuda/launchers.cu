// CUDA kernels of the ai.robe ops and their launchers (see launchers.h for the contract).
//
// Embedding kernels give each thread one 16-byte slice of the output (vector path, Z % 4 == 0) or one
// float (scalar path): consecutive threads write consecutive output, so stores coalesce. A ROBE block
// starts at any float, so the vector path reads the 16-byte-aligned chunks covering it and shifts: each
// lane loads one aligned float4 and borrows the next chunk from its neighbour lane with a shuffle.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "common/hash.h"
#include "cuda/launchers.h"

namespace robe::cuda {
namespace {

constexpr int kThreads = 256;
constexpr uint32_t kMaxItems = (uint32_t{1} << 31) - 1;  // FastDiv handles dividends below 2^31

// floor(n / d) for n < 2^31 with one multiply: mul = ceil(2^(31 + l) / d), l = ceil(log2 d).
struct FastDiv {
  uint32_t divisor;
  uint32_t shift;
  uint64_t mul;
};

FastDiv MakeFastDiv(uint32_t divisor) {
  uint32_t l = 0;
  while ((uint64_t{1} << l) < divisor) ++l;
  return {divisor, 31 + l, ((uint64_t{1} << (31 + l)) + divisor - 1) / divisor};
}

__device__ __forceinline__ uint32_t Div(const FastDiv& d, uint32_t n) {
  return static_cast<uint32_t>((static_cast<uint64_t>(n) * d.mul) >> d.shift);
}

struct EmbedParams {
  const int64_t* ids;
  const float* memory;
  float* out;
  const int64_t* keys;        // LMA only
  const uint8_t* signatures;  // LMA only, [num_keys, num_minhashes]
  uint64_t memory_size;
  uint32_t items;       // work items of this launch (output floats, or float4s on the vector path)
  uint32_t num_features;
  uint32_t num_blocks;
  uint32_t range;       // min(m - Z + 1, 2^31): every hash is below 2^31
  uint32_t keys_per_block;
  uint32_t num_minhashes;
  uint32_t block_size;
  FastDiv per_lookup;   // work items per lookup
  FastDiv features;     // F
  FastDiv per_block;    // work items per block
  uint32_t hash[3][kMaxFeatures];     // a1, a2, c
  uint32_t blocks[2][kMaxBlocks];     // g1, g2
  int64_t offsets[kMaxFeatures + 1];  // LMA only
};

struct VocabParams {
  const int64_t* ids;
  const int64_t* keys;
  int64_t* out;
  uint32_t items;
  FastDiv features;
  int64_t offsets[kMaxFeatures + 1];
};

static_assert(sizeof(EmbedParams) <= 4096, "kernel parameters are limited to 4 KiB");

struct SharedTables {
  uint32_t hash[3][kMaxFeatures];
  uint32_t blocks[2][kMaxBlocks];
  int64_t offsets[kMaxFeatures + 1];
};

__device__ __forceinline__ void StageTables(const EmbedParams& p, bool with_offsets, SharedTables* shared) {
  const uint32_t features = p.num_features, blocks = p.num_blocks;
  for (uint32_t i = threadIdx.x; i < 3 * features; i += blockDim.x) {
    shared->hash[i / features][i % features] = p.hash[i / features][i % features];
  }
  for (uint32_t i = threadIdx.x; i < 2 * blocks; i += blockDim.x) {
    shared->blocks[i / blocks][i % blocks] = p.blocks[i / blocks][i % blocks];
  }
  if (with_offsets) {
    for (uint32_t i = threadIdx.x; i <= features; i += blockDim.x) shared->offsets[i] = p.offsets[i];
  }
  __syncthreads();
}

__device__ __forceinline__ FeatureHash HashOf(const SharedTables& s, uint32_t f) {
  return {s.hash[0][f], s.hash[1][f], s.hash[2][f]};
}

// Start in M of block c of lookup (f, v); v must be valid. LMA: a sampled token (a key of feature f)
// hashes its block code with feature 0's coefficients (the one global hash), any other its own id.
template <bool kLma>
__device__ __forceinline__ uint32_t BlockStartOf(const EmbedParams& p, const SharedTables& s, int64_t v,
                                                 uint32_t f, uint32_t c) {
  uint64_t key;
  int64_t position = -1;
  if (kLma) VocabRow(p.keys, s.offsets[f], s.offsets[f + 1], f, v, &position);
  if (position >= 0) {
    const uint64_t code = LmaCode(p.signatures + position * p.num_minhashes, c, p.keys_per_block, p.num_minhashes);
    key = Key(HashOf(s, 0), code);
  } else {
    key = Key(HashOf(s, f), static_cast<uint64_t>(v));
  }
  const BlockHash g{s.blocks[0][c], s.blocks[1][c]};
  return static_cast<uint32_t>(BlockStart(Hash(g, key), p.range));
}

__device__ __forceinline__ float4 LoadChunk(const float* at) { return __ldg(reinterpret_cast<const float4*>(at)); }

// The chunk after the aligned one; only its first `shift` floats are used, and only they are read when
// the whole chunk would pass the end of M.
__device__ __forceinline__ float4 LoadNextChunk(const float* memory, uint64_t at, uint32_t shift,
                                                uint64_t memory_size) {
  if (at + 4 <= memory_size) return LoadChunk(memory + at);
  float4 chunk = make_float4(0.f, 0.f, 0.f, 0.f);
  chunk.x = __ldg(memory + at);
  if (shift > 1) chunk.y = __ldg(memory + at + 1);
  if (shift > 2) chunk.z = __ldg(memory + at + 2);
  return chunk;
}

// Floats [shift, shift + 4) of the 8 floats own ++ next.
__device__ __forceinline__ float4 Shifted(const float4& own, const float4& next, uint32_t shift) {
  switch (shift) {
    case 0: return own;
    case 1: return make_float4(own.y, own.z, own.w, next.x);
    case 2: return make_float4(own.z, own.w, next.x, next.y);
    default: return make_float4(own.w, next.x, next.y, next.z);
  }
}

__device__ __forceinline__ float4 ShuffleDown(const float4& v) {
  return make_float4(__shfl_down_sync(0xffffffffu, v.x, 1), __shfl_down_sync(0xffffffffu, v.y, 1),
                     __shfl_down_sync(0xffffffffu, v.z, 1), __shfl_down_sync(0xffffffffu, v.w, 1));
}

// One float4 of output per thread; requires Z % 4 == 0 and 16-byte aligned M and output.
template <bool kLma>
__global__ void __launch_bounds__(kThreads) EmbedVectorKernel(const __grid_constant__ EmbedParams p) {
  __shared__ SharedTables shared;
  StageTables(p, kLma, &shared);
  const uint32_t t = blockIdx.x * kThreads + threadIdx.x;
  const bool active = t < p.items;
  const uint32_t item = active ? t : 0;  // idle lanes still take part in the shuffle
  const uint32_t n = Div(p.per_lookup, item);
  const uint32_t q = item - n * p.per_lookup.divisor;      // float4 within the lookup
  const uint32_t f = n - Div(p.features, n) * p.num_features;
  const uint32_t c = Div(p.per_block, q);                  // block
  const uint32_t j = q - c * p.per_block.divisor;          // float4 within the block
  const int64_t v = __ldg(p.ids + n);
  const bool valid = IsValidId(v);
  const uint32_t start = BlockStartOf<kLma>(p, shared, valid ? v : 0, f, c);
  const uint32_t shift = start & 3;
  const uint64_t aligned = start - shift + 4 * j;
  const float4 own = LoadChunk(p.memory + aligned);
  float4 next = ShuffleDown(own);
  if (shift != 0 && (j + 1 == p.per_block.divisor || (threadIdx.x & 31) == 31)) {
    next = LoadNextChunk(p.memory, aligned + 4, shift, p.memory_size);
  }
  if (active) {
    const float4 nan4 = make_float4(NAN, NAN, NAN, NAN);
    reinterpret_cast<float4*>(p.out)[item] = valid ? Shifted(own, next, shift) : nan4;
  }
}

// One float of output per thread: any Z, any alignment.
template <bool kLma>
__global__ void __launch_bounds__(kThreads) EmbedScalarKernel(const __grid_constant__ EmbedParams p) {
  __shared__ SharedTables shared;
  StageTables(p, kLma, &shared);
  const uint32_t t = blockIdx.x * kThreads + threadIdx.x;
  if (t >= p.items) return;
  const uint32_t n = Div(p.per_lookup, t);
  const uint32_t e = t - n * p.per_lookup.divisor;  // element within the lookup
  const uint32_t f = n - Div(p.features, n) * p.num_features;
  const uint32_t c = Div(p.per_block, e);
  const int64_t v = __ldg(p.ids + n);
  if (!IsValidId(v)) {
    p.out[t] = NAN;
    return;
  }
  p.out[t] = __ldg(p.memory + BlockStartOf<kLma>(p, shared, v, f, c) + (e - c * p.block_size));
}

__global__ void __launch_bounds__(kThreads) VocabKernel(const __grid_constant__ VocabParams p) {
  __shared__ int64_t offsets[kMaxFeatures + 1];
  for (uint32_t i = threadIdx.x; i <= p.features.divisor; i += blockDim.x) offsets[i] = p.offsets[i];
  __syncthreads();
  const uint32_t n = blockIdx.x * kThreads + threadIdx.x;
  if (n >= p.items) return;
  const uint32_t f = n - Div(p.features, n) * p.features.divisor;
  const int64_t v = __ldg(p.ids + n);
  const int64_t lo = offsets[f], hi = offsets[f + 1];
  int64_t position = -1;
  p.out[n] = IsValidId(v) ? VocabRow(p.keys, lo, hi, f, v, &position) : hi + f;
}

void Require(bool condition, const std::string& message) {
  if (!condition) throw std::invalid_argument("ai.robe CUDA: " + message);
}

void CopyOffsets(const int64_t* offsets, int64_t num_features, int64_t* into) {
  for (int64_t f = 0; f <= num_features; ++f) into[f] = offsets[f];
}

template <bool kLma>
cudaError_t LaunchEmbedding(const RobeArgs& a, const HashTables& tables, EmbedParams p, cudaStream_t stream) {
  Require(a.batch >= 0, "batch must be >= 0");
  Require(a.dim >= 1 && a.block_size >= 1 && a.dim % a.block_size == 0, "block_size must divide embedding_dim");
  Require(a.dim / a.block_size == tables.num_blocks, "the hash tables hold " + std::to_string(tables.num_blocks) +
                                                         " blocks, embedding_dim / block_size is " +
                                                         std::to_string(a.dim / a.block_size));
  Require(a.memory_size >= a.block_size, "M must hold at least one block");
  if (a.batch == 0) return cudaSuccess;
  std::memcpy(p.hash, tables.feature, sizeof(p.hash));
  std::memcpy(p.blocks, tables.block, sizeof(p.blocks));
  const int64_t num_features = tables.num_features;
  p.num_blocks = static_cast<uint32_t>(tables.num_blocks);
  const bool vector = a.block_size % 4 == 0 && reinterpret_cast<uintptr_t>(a.memory) % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(a.out) % 16 == 0;
  const int64_t per_lookup = vector ? a.dim / 4 : a.dim;
  const int64_t per_block = vector ? a.block_size / 4 : a.block_size;
  Require(per_lookup * num_features <= kMaxItems, "embedding_dim * num_features is too large");
  p.memory = a.memory;
  p.memory_size = static_cast<uint64_t>(a.memory_size);
  p.num_features = static_cast<uint32_t>(num_features);
  p.range = static_cast<uint32_t>(std::min<int64_t>(a.memory_size - a.block_size + 1, int64_t{1} << 31));
  p.block_size = static_cast<uint32_t>(a.block_size);
  p.per_lookup = MakeFastDiv(static_cast<uint32_t>(per_lookup));
  p.features = MakeFastDiv(static_cast<uint32_t>(num_features));
  p.per_block = MakeFastDiv(static_cast<uint32_t>(per_block));
  // Launch in slices of whole rows whose work items stay below 2^31.
  const int64_t rows_per_launch = kMaxItems / (per_lookup * num_features);
  for (int64_t row = 0; row < a.batch; row += rows_per_launch) {
    const int64_t rows = std::min(rows_per_launch, a.batch - row);
    p.ids = a.ids + row * num_features;
    p.out = a.out + row * num_features * a.dim;
    p.items = static_cast<uint32_t>(rows * num_features * per_lookup);
    const unsigned grid = (p.items + kThreads - 1) / kThreads;
    if (vector) {
      EmbedVectorKernel<kLma><<<grid, kThreads, 0, stream>>>(p);
    } else {
      EmbedScalarKernel<kLma><<<grid, kThreads, 0, stream>>>(p);
    }
  }
  return cudaGetLastError();
}

}  // namespace

HashTables MakeHashTables(const HashArrays& arrays) {
  Require(arrays.num_features >= 1 && arrays.num_features <= kMaxFeatures,
          "num_features must be in [1, " + std::to_string(kMaxFeatures) + "], got " +
              std::to_string(arrays.num_features));
  Require(arrays.num_blocks >= 1 && arrays.num_blocks <= kMaxBlocks,
          "embedding_dim / block_size must be in [1, " + std::to_string(kMaxBlocks) + "], got " +
              std::to_string(arrays.num_blocks));
  HashTables tables{};
  tables.num_features = arrays.num_features;
  tables.num_blocks = arrays.num_blocks;
  const int64_t* per_feature[3] = {arrays.a1, arrays.a2, arrays.c};
  const int64_t* per_block[2] = {arrays.g1, arrays.g2};
  auto read = [](const int64_t* values, int64_t count, uint32_t* into) {
    Require(values != nullptr, "a hash coefficient array is missing");
    for (int64_t i = 0; i < count; ++i) {
      Require(values[i] >= 1 && static_cast<uint64_t>(values[i]) < kPrime, "hash coefficients must be in [1, 2^31 - 2]");
      into[i] = static_cast<uint32_t>(values[i]);
    }
  };
  for (int k = 0; k < 3; ++k) read(per_feature[k], arrays.num_features, tables.feature[k]);
  for (int k = 0; k < 2; ++k) read(per_block[k], arrays.num_blocks, tables.block[k]);
  return tables;
}

void CheckOffsets(const int64_t* offsets, int64_t num_features, int64_t num_keys) {
  Require(num_features >= 1 && num_features <= kMaxFeatures,
          "num_features must be in [1, " + std::to_string(kMaxFeatures) + "], got " + std::to_string(num_features));
  bool valid = offsets != nullptr && offsets[0] == 0 && offsets[num_features] == num_keys;
  for (int64_t f = 0; valid && f < num_features; ++f) valid = offsets[f] <= offsets[f + 1];
  Require(valid, "offsets must be num_features + 1 non-decreasing values from 0 to num_keys");
}

cudaError_t LaunchRobeEmbedding(const RobeArgs& args, const HashTables& tables, cudaStream_t stream) {
  return LaunchEmbedding<false>(args, tables, EmbedParams{}, stream);
}

cudaError_t LaunchLmaEmbedding(const LmaArgs& args, const HashTables& tables, cudaStream_t stream) {
  Require(args.keys_per_block >= 1 && args.keys_per_block <= kMaxKeysPerBlock, "keys_per_block must be in [1, 6]");
  Require(args.num_minhashes >= args.keys_per_block && args.num_minhashes <= kMaxMinhashes,
          "signatures must hold between keys_per_block and 255 minhashes per token");
  Require(args.num_keys >= 0 && args.offsets != nullptr, "num_keys must be >= 0, with host offsets");
  EmbedParams p{};
  CopyOffsets(args.offsets, tables.num_features, p.offsets);
  p.keys = args.keys;
  p.signatures = args.signatures;
  p.keys_per_block = static_cast<uint32_t>(args.keys_per_block);
  p.num_minhashes = static_cast<uint32_t>(args.num_minhashes);
  return LaunchEmbedding<true>(args.robe, tables, p, stream);
}

cudaError_t LaunchVocabLookup(const VocabArgs& args, cudaStream_t stream) {
  Require(args.batch >= 0, "batch must be >= 0");
  CheckOffsets(args.offsets, args.num_features, args.num_keys);
  if (args.batch == 0) return cudaSuccess;
  VocabParams p{};
  CopyOffsets(args.offsets, args.num_features, p.offsets);
  p.keys = args.keys;
  p.features = MakeFastDiv(static_cast<uint32_t>(args.num_features));
  const int64_t rows_per_launch = kMaxItems / args.num_features;
  for (int64_t row = 0; row < args.batch; row += rows_per_launch) {
    const int64_t rows = std::min(rows_per_launch, args.batch - row);
    p.ids = args.ids + row * args.num_features;
    p.out = args.out + row * args.num_features;
    p.items = static_cast<uint32_t>(rows * args.num_features);
    VocabKernel<<<(p.items + kThreads - 1) / kThreads, kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

}  // namespace robe::cuda
