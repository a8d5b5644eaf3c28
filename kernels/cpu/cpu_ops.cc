#include "cpu/cpu_ops.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <limits>

#include "common/op_support.h"
#include "cpu/lookups.h"

namespace robe::cpu {
namespace {

constexpr ONNXTensorElementDataType kInt64 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
constexpr ONNXTensorElementDataType kFloat = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
constexpr ONNXTensorElementDataType kUint8 = ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;

// Lookups per thread-pool task: large enough to amortise scheduling, small enough to balance threads.
constexpr int64_t kLookupsPerTask = 1024;

// Runs lookups(begin, end) over [0, count) in tasks on ORT's intra-op pool; returns the first lookup
// any task reported as invalid, or -1.
template <typename Lookups>
int64_t ParallelLookups(const Ort::KernelContext& ctx, int64_t count, Lookups&& lookups) {
  const int64_t tasks = (count + kLookupsPerTask - 1) / kLookupsPerTask;
  if (tasks <= 1) return count > 0 ? lookups(0, count) : -1;
  struct Shared {
    Lookups* lookups;
    int64_t count;
    std::atomic<int64_t> first_invalid{std::numeric_limits<int64_t>::max()};
  } shared{&lookups, count};
  auto run_task = [](void* data, size_t task) {
    auto* s = static_cast<Shared*>(data);
    const int64_t begin = static_cast<int64_t>(task) * kLookupsPerTask;
    const int64_t invalid = (*s->lookups)(begin, std::min(begin + kLookupsPerTask, s->count));
    int64_t seen = s->first_invalid.load();
    while (invalid >= 0 && invalid < seen && !s->first_invalid.compare_exchange_weak(seen, invalid)) {
    }
  };
  ctx.ParallelFor(run_task, static_cast<size_t>(tasks), 0, &shared);
  const int64_t invalid = shared.first_invalid.load();
  return invalid == std::numeric_limits<int64_t>::max() ? -1 : invalid;
}

struct RobeKernel : StatusKernel<RobeKernel> {
  static constexpr const char* kName = "RobeEmbedding";
  static constexpr const char* kProvider = kCpuProvider;
  static constexpr std::array<ONNXTensorElementDataType, 2> kInputTypes{kInt64, kFloat};
  static constexpr ONNXTensorElementDataType kOutputType = kFloat;
  static OrtMemType InputMemoryType(size_t /*index*/) { return OrtMemTypeDefault; }
  static void InferShape(Ort::ShapeInferContext& ctx, OrtShapeInferContext* raw) {
    InferEmbeddingShape(ctx, raw, kName);
  }

  explicit RobeKernel(const OrtKernelInfo* info) : attrs(ReadEmbeddingAttributes(info, kName, false)) {}

  void Compute(OrtKernelContext* raw) {
    Ort::KernelContext ctx{raw};
    const EmbeddingInputs in = CheckRobeInputs(ctx, attrs, kName);
    const int64_t num_features = attrs.NumFeatures();
    Ort::UnownedValue out = ctx.GetOutput(0, {in.batch, num_features, attrs.dim});  // (B, F, d)
    const RobeTask task{in.ids, num_features, attrs.hash.data(), attrs.blocks.data(), in.memory, in.memory_size,
                        attrs.dim, attrs.block_size, out.GetTensorMutableData<float>()};
    const int64_t invalid = ParallelLookups(
        ctx, in.batch * num_features, [&](int64_t begin, int64_t end) { return RobeLookups(task, begin, end); });
    if (invalid >= 0) FailInvalidId(kName, task.ids[invalid], invalid, num_features);
  }

  EmbeddingAttributes attrs;
};

struct LmaKernel : StatusKernel<LmaKernel> {
  static constexpr const char* kName = "LmaEmbedding";
  static constexpr const char* kProvider = kCpuProvider;
  static constexpr std::array<ONNXTensorElementDataType, 5> kInputTypes{kInt64, kFloat, kInt64, kInt64, kUint8};
  static constexpr ONNXTensorElementDataType kOutputType = kFloat;
  static OrtMemType InputMemoryType(size_t /*index*/) { return OrtMemTypeDefault; }
  static void InferShape(Ort::ShapeInferContext& ctx, OrtShapeInferContext* raw) {
    InferEmbeddingShape(ctx, raw, kName);
  }

  explicit LmaKernel(const OrtKernelInfo* info) : attrs(ReadEmbeddingAttributes(info, kName, true)) {}

  void Compute(OrtKernelContext* raw) {
    Ort::KernelContext ctx{raw};
    const LmaInputs in = CheckLmaInputs(ctx, attrs, kName);
    const int64_t num_features = attrs.NumFeatures();
    const int64_t batch = in.embedding.batch;
    Ort::UnownedValue out = ctx.GetOutput(0, {batch, num_features, attrs.dim});  // (B, F, d)
    const LmaTask task{{in.embedding.ids, num_features, attrs.hash.data(), attrs.blocks.data(), in.embedding.memory,
                        in.embedding.memory_size, attrs.dim, attrs.block_size, out.GetTensorMutableData<float>()},
                       in.keys, in.offsets, in.signatures, in.num_minhashes, attrs.keys_per_block};
    const int64_t invalid = ParallelLookups(
        ctx, batch * num_features, [&](int64_t begin, int64_t end) { return LmaLookups(task, begin, end); });
    if (invalid >= 0) FailInvalidId(kName, task.robe.ids[invalid], invalid, num_features);
  }

  EmbeddingAttributes attrs;
};

struct VocabKernel : StatusKernel<VocabKernel> {
  static constexpr const char* kName = "VocabLookup";
  static constexpr const char* kProvider = kCpuProvider;
  static constexpr std::array<ONNXTensorElementDataType, 3> kInputTypes{kInt64, kInt64, kInt64};
  static constexpr ONNXTensorElementDataType kOutputType = kInt64;
  static OrtMemType InputMemoryType(size_t /*index*/) { return OrtMemTypeDefault; }
  static void InferShape(Ort::ShapeInferContext& ctx, OrtShapeInferContext* raw) { InferVocabShape(ctx, raw, kName); }

  explicit VocabKernel(const OrtKernelInfo* /*info*/) {}

  void Compute(OrtKernelContext* raw) {
    Ort::KernelContext ctx{raw};
    const VocabInputs in = CheckVocabInputs(ctx, kName);
    const int64_t num_features = in.num_features;
    Ort::UnownedValue out = ctx.GetOutput(0, {in.batch, num_features});  // (B, F)
    const VocabTask task{in.ids, num_features, in.keys, in.offsets, out.GetTensorMutableData<int64_t>()};
    const int64_t invalid = ParallelLookups(
        ctx, in.batch * num_features, [&](int64_t begin, int64_t end) { return VocabLookups(task, begin, end); });
    if (invalid >= 0) FailInvalidId(kName, task.ids[invalid], invalid, num_features);
  }
};

}  // namespace

void RegisterOps(Ort::CustomOpDomain& domain) {
  static const LookupOp<RobeKernel> robe_op;
  static const LookupOp<LmaKernel> lma_op;
  static const LookupOp<VocabKernel> vocab_op;
  domain.Add(&robe_op);
  domain.Add(&lma_op);
  domain.Add(&vocab_op);
}

}  // namespace robe::cpu
