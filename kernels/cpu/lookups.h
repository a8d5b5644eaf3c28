// CPU lookups of the ai.robe ops as plain functions over raw arrays (no ONNX Runtime types), so the ORT
// kernels in cpu_ops.cc only parse inputs and split the work over ORT's thread pool.
//
// Each function fills the flat lookups [begin, end) of ids [B, F] (lookup n is row n / F, feature n % F)
// and returns the first lookup whose id is outside [0, 2^62), or -1. Inputs are validated by the caller:
// offsets well formed, block_size dividing dim, memory_size >= block_size.
#pragma once

#include <cstdint>

#include "common/hash.h"

namespace robe::cpu {

struct RobeTask {
  const int64_t* ids;
  int64_t num_features;
  const FeatureHash* hash;  // [num_features]
  const BlockHash* blocks;  // [dim / block_size]
  const float* memory;
  int64_t memory_size;
  int64_t dim;
  int64_t block_size;
  float* out;  // [B, F, dim]
};

// LMA: a sampled token (a key of its feature) hashes its block codes with feature 0's coefficients (the
// one global hash); any other token reads its ROBE-Z locations.
struct LmaTask {
  RobeTask robe;
  const int64_t* keys;        // [K], sorted within each feature
  const int64_t* offsets;     // [F + 1]
  const uint8_t* signatures;  // [K, num_minhashes]
  int64_t num_minhashes;
  int64_t keys_per_block;
};

struct VocabTask {
  const int64_t* ids;
  int64_t num_features;
  const int64_t* keys;     // [K]
  const int64_t* offsets;  // [F + 1]
  int64_t* out;            // [B, F]
};

// The d/Z block starts of lookup n (feature f); false when its id is outside [0, 2^62). Every start is
// below 2^31 (hashes are), whatever m is.
bool RobeStarts(const RobeTask& task, int64_t n, int64_t f, uint32_t* starts);
bool LmaStarts(const LmaTask& task, int64_t n, int64_t f, uint32_t* starts);

int64_t RobeLookups(const RobeTask& task, int64_t begin, int64_t end);
int64_t LmaLookups(const LmaTask& task, int64_t begin, int64_t end);
int64_t VocabLookups(const VocabTask& task, int64_t begin, int64_t end);

}  // namespace robe::cpu
