#include "cuda/cuda_ops.h"

#include <array>
#include <cstdint>
#include <string>

#include "common/op_support.h"
#include "cuda/launchers.h"

namespace robe::cuda {
namespace {

constexpr ONNXTensorElementDataType kInt64 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
constexpr ONNXTensorElementDataType kFloat = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;

// Everything the launchers need from the attributes, kept as host arrays.
struct HostHash {
  explicit HostHash(const EmbeddingAttributes& attrs) {
    for (const FeatureHash& h : attrs.hash) {
      a1.push_back(static_cast<int64_t>(h.a1));
      a2.push_back(static_cast<int64_t>(h.a2));
      b.push_back(static_cast<int64_t>(h.b));
      c.push_back(static_cast<int64_t>(h.c));
    }
  }
  HashArrays Arrays() const { return {a1.data(), a2.data(), b.data(), c.data()}; }
  std::vector<int64_t> a1, a2, b, c;
};

void CheckLaunch(cudaError_t status, const char* op) {
  if (status != cudaSuccess) {
    throw Ort::Exception(std::string(op) + ": CUDA launch failed: " + cudaGetErrorString(status), ORT_FAIL);
  }
}

void CheckFeatureCount(int64_t num_features, const char* op) {
  if (num_features > kMaxFeatures) {
    Fail(op, "the CUDA kernel handles at most " + std::to_string(kMaxFeatures) + " features, got " +
                 std::to_string(num_features));
  }
}

cudaStream_t StreamOf(const Ort::KernelContext& ctx) { return static_cast<cudaStream_t>(ctx.GetGPUComputeStream()); }

struct RobeKernel : StatusKernel<RobeKernel> {
  static constexpr const char* kName = "RobeEmbedding";
  static constexpr const char* kProvider = kCudaProvider;
  static constexpr std::array<ONNXTensorElementDataType, 2> kInputTypes{kInt64, kFloat};
  static constexpr ONNXTensorElementDataType kOutputType = kFloat;
  static OrtMemType InputMemoryType(size_t /*index*/) { return OrtMemTypeDefault; }
  static void InferShape(Ort::ShapeInferContext& ctx, OrtShapeInferContext* raw) {
    InferEmbeddingShape(ctx, raw, kName);
  }

  explicit RobeKernel(const OrtKernelInfo* info)
      : attrs(ReadEmbeddingAttributes(info, kName, false)), hash(attrs) {
    CheckFeatureCount(attrs.NumFeatures(), kName);
  }

  void Compute(OrtKernelContext* raw) {
    Ort::KernelContext ctx{raw};
    const EmbeddingInputs in = CheckRobeInputs(ctx, attrs, kName);
    const int64_t num_features = attrs.NumFeatures();
    Ort::UnownedValue out = ctx.GetOutput(0, {in.batch, num_features, attrs.dim});  // (B, F, d)
    if (in.batch == 0) return;
    const RobeArgs args{in.ids, in.batch, num_features, hash.Arrays(), in.memory, in.memory_size, attrs.dim,
                        attrs.block_size, out.GetTensorMutableData<float>()};
    CheckLaunch(LaunchRobeEmbedding(args, StreamOf(ctx)), kName);
  }

  EmbeddingAttributes attrs;
  HostHash hash;
};

struct LmaKernel : StatusKernel<LmaKernel> {
  static constexpr const char* kName = "LmaEmbedding";
  static constexpr const char* kProvider = kCudaProvider;
  static constexpr std::array<ONNXTensorElementDataType, 5> kInputTypes{kInt64, kFloat, kInt64, kInt64, kInt64};
  static constexpr ONNXTensorElementDataType kOutputType = kFloat;
  // offsets (input 3) stay in host memory: checked there and passed in the kernel parameters.
  static OrtMemType InputMemoryType(size_t index) { return index == 3 ? OrtMemTypeCPUInput : OrtMemTypeDefault; }
  static void InferShape(Ort::ShapeInferContext& ctx, OrtShapeInferContext* raw) {
    InferEmbeddingShape(ctx, raw, kName);
  }

  explicit LmaKernel(const OrtKernelInfo* info) : attrs(ReadEmbeddingAttributes(info, kName, true)), hash(attrs) {
    CheckFeatureCount(attrs.NumFeatures(), kName);
  }

  void Compute(OrtKernelContext* raw) {
    Ort::KernelContext ctx{raw};
    const LmaInputs in = CheckLmaInputs(ctx, attrs, kName);
    const int64_t num_features = attrs.NumFeatures();
    const int64_t batch = in.embedding.batch;
    Ort::UnownedValue out = ctx.GetOutput(0, {batch, num_features, attrs.dim});  // (B, F, d)
    if (batch == 0) return;
    const LmaArgs args{{in.embedding.ids, batch, num_features, hash.Arrays(), in.embedding.memory,
                        in.embedding.memory_size, attrs.dim, attrs.block_size, out.GetTensorMutableData<float>()},
                       in.keys, in.signatures, in.num_keys, in.offsets, attrs.keys_per_block};
    CheckLaunch(LaunchLmaEmbedding(args, StreamOf(ctx)), kName);
  }

  EmbeddingAttributes attrs;
  HostHash hash;
};

struct VocabKernel : StatusKernel<VocabKernel> {
  static constexpr const char* kName = "VocabLookup";
  static constexpr const char* kProvider = kCudaProvider;
  static constexpr std::array<ONNXTensorElementDataType, 3> kInputTypes{kInt64, kInt64, kInt64};
  static constexpr ONNXTensorElementDataType kOutputType = kInt64;
  static OrtMemType InputMemoryType(size_t index) { return index == 2 ? OrtMemTypeCPUInput : OrtMemTypeDefault; }
  static void InferShape(Ort::ShapeInferContext& ctx, OrtShapeInferContext* raw) { InferVocabShape(ctx, raw, kName); }

  explicit VocabKernel(const OrtKernelInfo* /*info*/) {}

  void Compute(OrtKernelContext* raw) {
    Ort::KernelContext ctx{raw};
    const VocabInputs in = CheckVocabInputs(ctx, kName);
    CheckFeatureCount(in.num_features, kName);
    Ort::UnownedValue out = ctx.GetOutput(0, {in.batch, in.num_features});  // (B, F)
    if (in.batch == 0) return;
    const VocabArgs args{in.ids, in.batch, in.num_features, in.keys, in.num_keys, in.offsets,
                         out.GetTensorMutableData<int64_t>()};
    CheckLaunch(LaunchVocabLookup(args, StreamOf(ctx)), kName);
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

}  // namespace robe::cuda
