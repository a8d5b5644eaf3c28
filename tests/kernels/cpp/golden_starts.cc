// Reads golden cases on stdin and prints the block starts the CPU kernels compute (kernels/cpu/lookups.h),
// so tests/kernels/test_golden_cpp.py can check cases whose M (m > 2^31 floats) is too big to allocate.
//
// Input, whitespace-separated integers, one case after another until end of input:
//   lma F blocks m Z k S  a1[F] a2[F] c[F] g1[blocks] g2[blocks]  K keys[K] offsets[F+1] signatures[K*S]
//   B ids[B*F]
// (lma = 0 for RobeEmbedding: k, S, K are 0 and no tables follow). Output: per case one line of B*F*blocks
// starts, or "invalid N" for the first invalid lookup N.
#include <cstdint>
#include <iostream>
#include <vector>

#include "cpu/lookups.h"

namespace {

template <typename T>
std::vector<T> Read(std::istream& in, int64_t count) {
  std::vector<T> values(static_cast<size_t>(count));
  for (T& value : values) {
    int64_t raw = 0;
    in >> raw;
    value = static_cast<T>(raw);
  }
  return values;
}

}  // namespace

int main() {
  int64_t lma = 0;
  while (std::cin >> lma) {
    int64_t features, blocks, m, z, k, s;
    std::cin >> features >> blocks >> m >> z >> k >> s;
    const auto a1 = Read<uint64_t>(std::cin, features), a2 = Read<uint64_t>(std::cin, features);
    const auto c = Read<uint64_t>(std::cin, features);
    const auto g1 = Read<uint64_t>(std::cin, blocks), g2 = Read<uint64_t>(std::cin, blocks);
    std::vector<robe::FeatureHash> hash;
    std::vector<robe::BlockHash> block_hash;
    for (int64_t f = 0; f < features; ++f) hash.push_back({a1[f], a2[f], c[f]});
    for (int64_t b = 0; b < blocks; ++b) block_hash.push_back({g1[b], g2[b]});
    std::vector<int64_t> keys, offsets;
    std::vector<uint8_t> signatures;
    if (lma) {
      int64_t num_keys = 0;
      std::cin >> num_keys;
      keys = Read<int64_t>(std::cin, num_keys);
      offsets = Read<int64_t>(std::cin, features + 1);
      signatures = Read<uint8_t>(std::cin, num_keys * s);
    }
    int64_t batch = 0;
    std::cin >> batch;
    const auto ids = Read<int64_t>(std::cin, batch * features);
    const robe::cpu::RobeTask robe{ids.data(), features, hash.data(), block_hash.data(), nullptr, m, blocks * z, z,
                                   nullptr};
    const robe::cpu::LmaTask task{robe, keys.data(), offsets.data(), signatures.data(), s, k};
    std::vector<uint32_t> starts(static_cast<size_t>(blocks));
    for (int64_t n = 0; n < batch * features; ++n) {
      const int64_t f = n % features;
      if (!(lma ? robe::cpu::LmaStarts(task, n, f, starts.data()) : robe::cpu::RobeStarts(robe, n, f, starts.data()))) {
        std::cout << "invalid " << n;
        break;
      }
      for (uint32_t start : starts) std::cout << start << ' ';
    }
    std::cout << '\n';
  }
  return 0;
}
