#include "cpu/lookups.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace robe::cpu {
namespace {

// Block starts computed (and their cache lines prefetched) one group of lookups ahead of the copies, so
// the copies of a group overlap the memory latency of its reads. A group's blocks stay within
// kPrefetchBytes so the prefetched lines are still in L1 when the copies read them.
constexpr int64_t kStartsPerGroup = 256;
constexpr int64_t kPrefetchBytes = 16 * 1024;
constexpr int64_t kFloatsPerLine = 64 / sizeof(float);

inline void PrefetchBlock(const float* block, int64_t width) {
  for (int64_t i = 0; i < width; i += kFloatsPerLine) __builtin_prefetch(block + i);
  __builtin_prefetch(block + width - 1);
}

// kWidth > 0 makes the copy a fixed-size memcpy the compiler inlines; 0 reads the width at run time.
template <int kWidth>
inline void CopyBlocks(const float* memory, const uint32_t* starts, int64_t blocks, int64_t width, float* out) {
  const int64_t z = kWidth > 0 ? kWidth : width;
  for (int64_t c = 0; c < blocks; ++c) std::memcpy(out + c * z, memory + starts[c], z * sizeof(float));
}

// StartsOf(n, f, starts) writes the d/Z block starts of lookup n (feature f), false for an invalid id.
template <int kWidth, typename StartsOf>
int64_t GroupedLookups(const RobeTask& t, int64_t begin, int64_t end, StartsOf&& starts_of) {
  const int64_t blocks = t.dim / t.block_size;
  const int64_t per_lookup_bytes = t.dim * static_cast<int64_t>(sizeof(float));
  const int64_t group = std::max<int64_t>(1, std::min(kStartsPerGroup / blocks, kPrefetchBytes / per_lookup_bytes));
  std::vector<uint32_t> starts(static_cast<size_t>(group * blocks));
  int64_t feature = begin % t.num_features;
  for (int64_t first = begin; first < end; first += group) {
    const int64_t last = std::min(first + group, end);
    int64_t f = feature;
    for (int64_t n = first; n < last; ++n) {
      uint32_t* own = &starts[(n - first) * blocks];
      if (!starts_of(n, f, own)) return n;
      for (int64_t c = 0; c < blocks; ++c) PrefetchBlock(t.memory + own[c], t.block_size);
      f = f + 1 == t.num_features ? 0 : f + 1;
    }
    for (int64_t n = first; n < last; ++n) {
      CopyBlocks<kWidth>(t.memory, &starts[(n - first) * blocks], blocks, t.block_size, t.out + n * t.dim);
    }
    feature = f;
  }
  return -1;
}

template <typename StartsOf>
int64_t DispatchWidth(const RobeTask& t, int64_t begin, int64_t end, StartsOf&& starts_of) {
  switch (t.block_size) {
    case 1: return GroupedLookups<1>(t, begin, end, starts_of);
    case 4: return GroupedLookups<4>(t, begin, end, starts_of);
    case 8: return GroupedLookups<8>(t, begin, end, starts_of);
    case 16: return GroupedLookups<16>(t, begin, end, starts_of);
    case 32: return GroupedLookups<32>(t, begin, end, starts_of);
    case 64: return GroupedLookups<64>(t, begin, end, starts_of);
    case 128: return GroupedLookups<128>(t, begin, end, starts_of);
    default: return GroupedLookups<0>(t, begin, end, starts_of);
  }
}

}  // namespace

bool RobeStarts(const RobeTask& t, int64_t n, int64_t f, uint32_t* starts) {
  const int64_t v = t.ids[n];
  if (!IsValidId(v)) return false;
  const int64_t blocks = t.dim / t.block_size;
  const uint64_t range = static_cast<uint64_t>(t.memory_size - t.block_size + 1);
  const uint64_t key = Key(t.hash[f], static_cast<uint64_t>(v));
  for (int64_t c = 0; c < blocks; ++c) starts[c] = static_cast<uint32_t>(BlockStart(Hash(t.blocks[c], key), range));
  return true;
}

bool LmaStarts(const LmaTask& task, int64_t n, int64_t f, uint32_t* starts) {
  const RobeTask& t = task.robe;
  const int64_t v = t.ids[n];
  if (!IsValidId(v)) return false;
  int64_t position = -1;
  VocabRow(task.keys, task.offsets[f], task.offsets[f + 1], f, v, &position);
  if (position < 0) return RobeStarts(t, n, f, starts);  // not a sampled token: ROBE-Z locations
  const int64_t blocks = t.dim / t.block_size;
  const uint64_t range = static_cast<uint64_t>(t.memory_size - t.block_size + 1);
  const uint8_t* signature = task.signatures + position * task.num_minhashes;
  for (int64_t c = 0; c < blocks; ++c) {
    const uint64_t code = LmaCode(signature, static_cast<uint64_t>(c), task.keys_per_block, task.num_minhashes);
    starts[c] = static_cast<uint32_t>(BlockStart(Hash(t.blocks[c], Key(t.hash[0], code)), range));  // global hash
  }
  return true;
}

int64_t RobeLookups(const RobeTask& t, int64_t begin, int64_t end) {
  return DispatchWidth(t, begin, end, [&](int64_t n, int64_t f, uint32_t* starts) { return RobeStarts(t, n, f, starts); });
}

int64_t LmaLookups(const LmaTask& task, int64_t begin, int64_t end) {
  return DispatchWidth(task.robe, begin, end,
                       [&](int64_t n, int64_t f, uint32_t* starts) { return LmaStarts(task, n, f, starts); });
}

int64_t VocabLookups(const VocabTask& t, int64_t begin, int64_t end) {
  int64_t f = begin % t.num_features;
  for (int64_t n = begin; n < end; ++n) {
    const int64_t v = t.ids[n];
    if (!IsValidId(v)) return n;
    int64_t position = -1;
    t.out[n] = VocabRow(t.keys, t.offsets[f], t.offsets[f + 1], f, v, &position);
    f = f + 1 == t.num_features ? 0 : f + 1;
  }
  return -1;
}

}  // namespace robe::cpu
