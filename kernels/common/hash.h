// The hash contract of kernels/reference.py (DESIGN.md section 3, hash version 2) for C++ and CUDA.
//
// Every function here is bit-identical to its NumPy counterpart. Products stay below 2^63: a1 * lo,
// a2 * hi and g1 * u are below 2^62 because every coefficient, both halves of a valid id and every key u
// are below 2^31. This header includes nothing from ONNX Runtime or CUDA so CPU kernels, CUDA kernels and
// the standalone launchers share it.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define ROBE_HD __host__ __device__ __forceinline__
#else
#define ROBE_HD inline
#endif

namespace robe {

constexpr int64_t kHashVersion = 2;  // the ai.robe op version that implements it
constexpr uint64_t kPrime = (uint64_t{1} << 31) - 1;
constexpr int64_t kIdLimit = int64_t{1} << 62;
constexpr int kLoBits = 31;
constexpr int kCodeShift = 8;              // one uint8 minhash per 8 bits of a block code
constexpr int64_t kMaxKeysPerBlock = 6;    // codes < 2^48
constexpr int64_t kMaxMinhashes = 255;
constexpr int64_t kDefaultKeysPerBlock = 2;

// Per-feature coefficients A1, A2, C and per-block G1, G2, each in [1, P-1].
struct FeatureHash {
  uint64_t a1, a2, c;
};
struct BlockHash {
  uint64_t g1, g2;
};

ROBE_HD bool IsValidId(int64_t v) { return v >= 0 && v < kIdLimit; }

// x mod (2^31 - 1) for any 64-bit x, by folding the Mersenne prime (two folds leave x < 2^31 + 4).
ROBE_HD uint64_t ModPrime(uint64_t x) {
  x = (x & kPrime) + (x >> kLoBits);
  x = (x & kPrime) + (x >> kLoBits);
  return x >= kPrime ? x - kPrime : x;
}

// u(f, v) for a valid id v (0 <= v < 2^62).
ROBE_HD uint64_t Key(const FeatureHash& p, uint64_t v) {
  // Both factors of each product are below 2^31: a 32 x 32 -> 64-bit multiply (one instruction on GPUs).
  const uint32_t lo = static_cast<uint32_t>(v & kPrime);  // kPrime is also the 31-bit mask
  const uint32_t hi = static_cast<uint32_t>(v >> kLoBits);
  const uint64_t a1_lo = static_cast<uint64_t>(static_cast<uint32_t>(p.a1)) * lo;
  const uint64_t a2_hi = static_cast<uint64_t>(static_cast<uint32_t>(p.a2)) * hi;
  return ModPrime(ModPrime(a1_lo) + ModPrime(a2_hi) + p.c);
}

// h(f, c, v) = (G1[c] u(f, v) + G2[c]) mod P, from the key u = Key(feature f, v).
ROBE_HD uint64_t Hash(const BlockHash& g, uint64_t key) {
  return ModPrime(static_cast<uint64_t>(static_cast<uint32_t>(g.g1)) * static_cast<uint32_t>(key) + g.g2);
}

// h mod range for h < P: range = m - Z + 1 >= 1. 32-bit division is enough because h < 2^31.
ROBE_HD uint64_t BlockStart(uint64_t h, uint64_t range) {
  return range > h ? h : static_cast<uint32_t>(h) % static_cast<uint32_t>(range);
}

// LMA code of block c: sum_t signature[(c k + t) mod S] << 8t over t < k (signature: S uint8 minhashes).
ROBE_HD uint64_t LmaCode(const uint8_t* signature, uint64_t block, int64_t keys_per_block, int64_t minhashes) {
  uint64_t code = 0;
  uint64_t s = (block * static_cast<uint64_t>(keys_per_block)) % static_cast<uint64_t>(minhashes);
  for (int64_t t = 0; t < keys_per_block; ++t) {
    code |= static_cast<uint64_t>(signature[s]) << (kCodeShift * t);
    s = s + 1 == static_cast<uint64_t>(minhashes) ? 0 : s + 1;
  }
  return code;
}

// First position in keys[lo, hi) whose key is >= v (hi when none): reads only keys[lo, hi).
ROBE_HD int64_t LowerBound(const int64_t* keys, int64_t lo, int64_t hi, int64_t v) {
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (keys[mid] < v) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// Full-table row of v in feature f: p + f when found at global position p, else the OOV row hi + f.
// *position receives p, or -1 when v is not a key of the feature.
ROBE_HD int64_t VocabRow(const int64_t* keys, int64_t lo, int64_t hi, int64_t feature, int64_t v,
                         int64_t* position) {
  const int64_t pos = LowerBound(keys, lo, hi, v);
  const bool found = pos < hi && keys[pos] == v;
  *position = found ? pos : -1;
  return (found ? pos : hi) + feature;
}

}  // namespace robe
