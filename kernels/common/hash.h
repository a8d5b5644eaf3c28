// The hash contract of kernels/reference.py (DESIGN.md section 3) for C++ and CUDA, in one place.
//
// Every function here is bit-identical to its NumPy counterpart. Products stay below 2^63: a1 * lo and
// a2 * hi are below 2^62 because every coefficient and both halves of a valid id are below 2^31.
// This header includes nothing from ONNX Runtime or CUDA so CPU kernels, CUDA kernels and the standalone
// launchers share it.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define ROBE_HD __host__ __device__ __forceinline__
#else
#define ROBE_HD inline
#endif

namespace robe {

constexpr uint64_t kPrime = (uint64_t{1} << 31) - 1;
constexpr int64_t kIdLimit = int64_t{1} << 62;
constexpr int kLoBits = 31;
constexpr int kSignatureKeys = 16;
constexpr int kSignatureKeyBits = 4;
constexpr int64_t kDefaultKeysPerBlock = 8;
constexpr uint64_t kSelectFirstMul = 48271, kSelectFirstAdd = 11;
constexpr uint64_t kSelectStepMul = 16807, kSelectStepAdd = 7;

// Per-feature hash coefficients, each in [1, P-1].
struct FeatureHash {
  uint64_t a1, a2, b, c;
};

ROBE_HD bool IsValidId(int64_t v) { return v >= 0 && v < kIdLimit; }

// x mod (2^31 - 1) for any 64-bit x, by folding the Mersenne prime (two folds leave x < 2^31 + 4).
ROBE_HD uint64_t ModPrime(uint64_t x) {
  x = (x & kPrime) + (x >> kLoBits);
  x = (x & kPrime) + (x >> kLoBits);
  return x >= kPrime ? x - kPrime : x;
}

// h(f, c, v) for a valid id v (0 <= v < 2^62) and a block index c below 2^31.
ROBE_HD uint64_t Hash(const FeatureHash& p, uint64_t block, uint64_t v) {
  // Both factors of each product are below 2^31: a 32 x 32 -> 64-bit multiply (one instruction on GPUs).
  const uint32_t lo = static_cast<uint32_t>(v & kPrime);  // kPrime is also the 31-bit mask
  const uint32_t hi = static_cast<uint32_t>(v >> kLoBits);
  const uint64_t a1_lo = static_cast<uint64_t>(static_cast<uint32_t>(p.a1)) * lo;
  const uint64_t a2_hi = static_cast<uint64_t>(static_cast<uint32_t>(p.a2)) * hi;
  return ModPrime(ModPrime(a1_lo) + ModPrime(a2_hi) + p.b * block + p.c);
}

// h mod range for h < P: range = m - Z + 1 >= 1. 32-bit division is enough because h < 2^31.
ROBE_HD uint64_t BlockStart(uint64_t h, uint64_t range) {
  return range > h ? h : static_cast<uint32_t>(h) % static_cast<uint32_t>(range);
}

// LMA code of block c: k signature keys chosen by sel(c, t), key t of the code in bits 4t .. 4t+3.
ROBE_HD uint64_t LmaCode(uint64_t signature, uint64_t block, int keys_per_block) {
  const uint64_t first = ModPrime(kSelectFirstMul * block + kSelectFirstAdd) % kSignatureKeys;
  const uint64_t step = 2 * (ModPrime(kSelectStepMul * block + kSelectStepAdd) % 8) + 1;
  uint64_t code = 0;
  for (int t = 0; t < keys_per_block; ++t) {
    const uint64_t sel = (first + static_cast<uint64_t>(t) * step) % kSignatureKeys;
    const uint64_t key = (signature >> (kSignatureKeyBits * sel)) & 15;
    code |= key << (kSignatureKeyBits * t);
  }
  return code;
}

// Signature of a value without a learned one: key t = h(f, t, v) mod 16.
ROBE_HD uint64_t UnknownSignature(const FeatureHash& p, uint64_t v) {
  uint64_t signature = 0;
  for (int t = 0; t < kSignatureKeys; ++t) {
    signature |= (Hash(p, static_cast<uint64_t>(t), v) % kSignatureKeys) << (kSignatureKeyBits * t);
  }
  return signature;
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

// Signature of v in feature f: the learned one when v is a key of f, else UnknownSignature.
ROBE_HD uint64_t LmaSignature(const FeatureHash& p, const int64_t* keys, const int64_t* signatures,
                              int64_t lo, int64_t hi, int64_t v) {
  int64_t position = -1;
  VocabRow(keys, lo, hi, 0, v, &position);
  return position >= 0 ? static_cast<uint64_t>(signatures[position]) : UnknownSignature(p, static_cast<uint64_t>(v));
}

}  // namespace robe
