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
  const float* memory;
  int64_t memory_size;
  int64_t dim;
  int64_t block_size;
  float* out;  // [B, F, dim]
};

// LMA reads signatures through keys / offsets / signatures before hashing block codes like ROBE.
struct LmaTask {
  RobeTask robe;
  const int64_t* keys;        // [K], sorted within each feature
  const int64_t* offsets;     // [F + 1]
  const int64_t* signatures;  // [K]
  int keys_per_block;
};

struct VocabTask {
  const int64_t* ids;
  int64_t num_features;
  const int64_t* keys;     // [K]
  const int64_t* offsets;  // [F + 1]
  int64_t* out;            // [B, F]
};

int64_t RobeLookups(const RobeTask& task, int64_t begin, int64_t end);
int64_t LmaLookups(const LmaTask& task, int64_t begin, int64_t end);
int64_t VocabLookups(const VocabTask& task, int64_t begin, int64_t end);

}  // namespace robe::cpu
