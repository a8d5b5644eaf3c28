#include "cuda/cuda_ops.h"

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/op_support.h"
#include "cuda/launchers.h"

namespace robe::cuda {
namespace {

constexpr ONNXTensorElementDataType kInt64 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
constexpr ONNXTensorElementDataType kFloat = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
constexpr ONNXTensorElementDataType kUint8 = ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;

// The launchers' tables, made (and validated) once from the attributes when the kernel is created.
HashTables TablesOf(const EmbeddingAttributes& attrs, const char* op) {
  std::vector<int64_t> a1, a2, c, g1, g2;
  for (const FeatureHash& h : attrs.hash) {
    a1.push_back(static_cast<int64_t>(h.a1));
    a2.push_back(static_cast<int64_t>(h.a2));
    c.push_back(static_cast<int64_t>(h.c));
  }
  for (const BlockHash& g : attrs.blocks) {
    g1.push_back(static_cast<int64_t>(g.g1));
    g2.push_back(static_cast<int64_t>(g.g2));
  }
  try {
    return MakeHashTables({a1.data(), a2.data(), c.data(), attrs.NumFeatures(), g1.data(), g2.data(),
                           attrs.NumBlocks()});
  } catch (const std::invalid_argument& e) {
    Fail(op, e.what());
  }
}

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
      : attrs(ReadEmbeddingAttributes(info, kName, false)), tables(TablesOf(attrs, kName)) {}

  void Compute(OrtKernelContext* raw) {
    Ort::KernelContext ctx{raw};
    const EmbeddingInputs in = CheckRobeInputs(ctx, attrs, kName);
    const int64_t num_features = attrs.NumFeatures();
    Ort::UnownedValue out = ctx.GetOutput(0, {in.batch, num_features, attrs.dim});  // (B, F, d)
    if (in.batch == 0) return;
    const RobeArgs args{in.ids, in.batch, in.memory, in.memory_size, attrs.dim, attrs.block_size,
                        out.GetTensorMutableData<float>()};
    CheckLaunch(LaunchRobeEmbedding(args, tables, StreamOf(ctx)), kName);
  }

  EmbeddingAttributes attrs;
  HashTables tables;
};

struct LmaKernel : StatusKernel<LmaKernel> {
  static constexpr const char* kName = "LmaEmbedding";
  static constexpr const char* kProvider = kCudaProvider;
  static constexpr std::array<ONNXTensorElementDataType, 5> kInputTypes{kInt64, kFloat, kInt64, kInt64, kUint8};
  static constexpr ONNXTensorElementDataType kOutputType = kFloat;
  // offsets (input 3) stay in host memory: checked there and passed in the kernel parameters.
  static OrtMemType InputMemoryType(size_t index) { return index == 3 ? OrtMemTypeCPUInput : OrtMemTypeDefault; }
  static void InferShape(Ort::ShapeInferContext& ctx, OrtShapeInferContext* raw) {
    InferEmbeddingShape(ctx, raw, kName);
  }

  explicit LmaKernel(const OrtKernelInfo* info)
      : attrs(ReadEmbeddingAttributes(info, kName, true)), tables(TablesOf(attrs, kName)) {}

  void Compute(OrtKernelContext* raw) {
    Ort::KernelContext ctx{raw};
    const LmaInputs in = CheckLmaInputs(ctx, attrs, kName);
    const int64_t num_features = attrs.NumFeatures();
    const int64_t batch = in.embedding.batch;
    Ort::UnownedValue out = ctx.GetOutput(0, {batch, num_features, attrs.dim});  // (B, F, d)
    if (batch == 0) return;
    const LmaArgs args{{in.embedding.ids, batch, in.embedding.memory, in.embedding.memory_size, attrs.dim,
                        attrs.block_size, out.GetTensorMutableData<float>()},
                       in.keys, in.signatures, in.num_keys, in.num_minhashes, in.offsets, attrs.keys_per_block};
    CheckLaunch(LaunchLmaEmbedding(args, tables, StreamOf(ctx)), kName);  // offsets checked by CheckLmaInputs
  }

  EmbeddingAttributes attrs;
  HashTables tables;
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
