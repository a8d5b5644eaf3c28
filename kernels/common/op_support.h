// What the CPU and CUDA kernels of the ai.robe ops share: the op schema (LookupOp), attribute parsing,
// input checks that only read shapes and host memory, and the exception -> OrtStatus boundary.
//
// A kernel type plugged into LookupOp<Kernel> provides:
//   static constexpr const char* kName, *kProvider;
//   static constexpr std::array<ONNXTensorElementDataType, N> kInputTypes; kOutputType;
//   static OrtMemType InputMemoryType(size_t index);
//   static void InferShape(Ort::ShapeInferContext&, OrtShapeInferContext*);   (throws Ort::Exception)
//   explicit Kernel(const OrtKernelInfo*);                 (throws Ort::Exception)
//   void Compute(OrtKernelContext*);                       (throws Ort::Exception)
#pragma once

#include <array>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/hash.h"
#include "onnxruntime_cxx_api.h"

namespace robe {

inline constexpr const char* kDomain = "ai.robe";
inline constexpr const char* kCpuProvider = "CPUExecutionProvider";
inline constexpr const char* kCudaProvider = "CUDAExecutionProvider";

// Throws the ORT_INVALID_ARGUMENT error "<op>: <message>".
[[noreturn]] void Fail(const char* op, const std::string& message);

// Runs fn and turns any exception into an OrtStatus (nullptr on success): nothing escapes into ORT.
template <typename Fn>
OrtStatusPtr Guard(Fn&& fn) noexcept {
  try {
    fn();
    return nullptr;
  } catch (const Ort::Exception& e) {
    return Ort::GetApi().CreateStatus(e.GetOrtErrorCode(), e.what());
  } catch (const std::invalid_argument& e) {
    return Ort::GetApi().CreateStatus(ORT_INVALID_ARGUMENT, e.what());
  } catch (const std::bad_alloc&) {
    return Ort::GetApi().CreateStatus(ORT_FAIL, "ai.robe: out of memory");
  } catch (const std::exception& e) {
    return Ort::GetApi().CreateStatus(ORT_FAIL, e.what());
  }
}

// Attributes of RobeEmbedding / LmaEmbedding, validated when the kernel is created.
struct EmbeddingAttributes {
  int64_t dim = 0;
  int64_t block_size = 0;
  int64_t keys_per_block = kDefaultKeysPerBlock;
  std::vector<FeatureHash> hash;  // one entry per feature: a1, a2, c
  std::vector<BlockHash> blocks;  // one entry per block (d / Z): g1, g2

  int64_t NumFeatures() const { return static_cast<int64_t>(hash.size()); }
  int64_t NumBlocks() const { return dim / block_size; }
};

EmbeddingAttributes ReadEmbeddingAttributes(const OrtKernelInfo* info, const char* op, bool lma);

// Checks ids is int64 [B, F] with F == num_features; returns B.
int64_t CheckIds(const Ort::ConstValue& ids, int64_t num_features, const char* op);
// Checks M is float [m] with m >= block_size; returns m.
int64_t CheckMemory(const Ort::ConstValue& memory, int64_t block_size, const char* op);
// Checks a rank-1 tensor named `name`; returns its length.
int64_t CheckVector(const Ort::ConstValue& value, const char* name, const char* op);
// Checks offsets (host memory, F + 1 values) are non-decreasing from 0 to num_keys.
void CheckOffsets(const int64_t* offsets, int64_t count, int64_t num_features, int64_t num_keys, const char* op);
// The inputs of each op after every check that reads only shapes and host memory. Data pointers are
// where the execution provider keeps them (device memory on CUDA), except offsets, always host memory.
struct EmbeddingInputs {
  const int64_t* ids;  // [batch, F]
  const float* memory;  // [memory_size]
  int64_t batch;
  int64_t memory_size;
};
struct LmaInputs {
  EmbeddingInputs embedding;
  const int64_t* keys;  // [num_keys], sorted within each feature
  const int64_t* offsets;  // [F + 1], host memory
  const uint8_t* signatures;  // [num_keys, num_minhashes]
  int64_t num_keys;
  int64_t num_minhashes;
};
struct VocabInputs {
  const int64_t* ids;  // [batch, num_features]
  const int64_t* keys;  // [num_keys]
  const int64_t* offsets;  // [num_features + 1], host memory
  int64_t batch;
  int64_t num_features;
  int64_t num_keys;
};
// RobeEmbedding(ids, M) / LmaEmbedding(ids, M, keys, offsets, signatures) / VocabLookup(ids, keys, offsets).
EmbeddingInputs CheckRobeInputs(const Ort::KernelContext& ctx, const EmbeddingAttributes& attrs, const char* op);
LmaInputs CheckLmaInputs(const Ort::KernelContext& ctx, const EmbeddingAttributes& attrs, const char* op);
VocabInputs CheckVocabInputs(const Ort::KernelContext& ctx, const char* op);

// Throws the error for the invalid id found at flat position `index` of ids [B, F].
[[noreturn]] void FailInvalidId(const char* op, int64_t id, int64_t index, int64_t num_features);

// Static shape inference: [B, F] ids -> [B, F, embedding_dim] float, or [B, F] int64 rows. ORT (1.32)
// ignores the status an inference function returns, so a bad rank only shows when the kernel runs.
void InferEmbeddingShape(Ort::ShapeInferContext& ctx, OrtShapeInferContext* raw, const char* op);
void InferVocabShape(Ort::ShapeInferContext& ctx, OrtShapeInferContext* raw, const char* op);

// The ORT schema of one ai.robe op, served by Kernel (CPU or CUDA).
template <typename Kernel>
struct LookupOp : Ort::CustomOpBase<LookupOp<Kernel>, Kernel, /*WithStatus=*/true> {
  // Shape inference goes through the raw context: the 1.21 header's ShapeInferContext::SetOutputShape
  // marks symbolic dims with -2, which newer runtimes reject.
  LookupOp() {
    this->InferOutputShapeFn = [](const OrtCustomOp*, OrtShapeInferContext* raw) -> OrtStatusPtr {
      return Guard([&] {
        Ort::ShapeInferContext ctx(&Ort::GetApi(), raw);
        Kernel::InferShape(ctx, raw);
      });
    };
  }

  const char* GetName() const { return Kernel::kName; }
  const char* GetExecutionProviderType() const { return Kernel::kProvider; }
  size_t GetInputTypeCount() const { return Kernel::kInputTypes.size(); }
  ONNXTensorElementDataType GetInputType(size_t index) const { return Kernel::kInputTypes.at(index); }
  OrtMemType GetInputMemoryType(size_t index) const { return Kernel::InputMemoryType(index); }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t /*index*/) const { return Kernel::kOutputType; }

  OrtStatusPtr CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* info, void** kernel) const {
    return Guard([&] { *kernel = new Kernel(info); });
  }
};

// Adapts Kernel::Compute to CustomOpBase's status-returning ComputeV2.
template <typename Derived>
struct StatusKernel {
  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return Guard([&] { static_cast<Derived*>(this)->Compute(context); });
  }
};

}  // namespace robe
