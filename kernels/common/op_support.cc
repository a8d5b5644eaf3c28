#include "common/op_support.h"

#include <string>
#include <utility>

namespace robe {
namespace {

std::vector<int64_t> RequiredInts(const Ort::ConstKernelInfo& info, const char* name, const char* op) {
  try {
    return info.GetAttributes<int64_t>(name);
  } catch (const Ort::Exception&) {
    Fail(op, std::string("attribute '") + name + "' (ints) is required");
  }
}

int64_t RequiredInt(const Ort::ConstKernelInfo& info, const char* name, const char* op) {
  try {
    return info.GetAttribute<int64_t>(name);
  } catch (const Ort::Exception&) {
    Fail(op, std::string("attribute '") + name + "' (int) is required");
  }
}

int64_t OptionalInt(const Ort::ConstKernelInfo& info, const char* name, int64_t fallback) {
  try {
    return info.GetAttribute<int64_t>(name);
  } catch (const Ort::Exception&) {
    return fallback;
  }
}

bool HasInts(const Ort::ConstKernelInfo& info, const char* name) {
  try {
    info.GetAttributes<int64_t>(name);
    return true;
  } catch (const Ort::Exception&) {
    return false;
  }
}

std::vector<int64_t> Coefficients(const Ort::ConstKernelInfo& info, const char* name, size_t length,
                                  const char* what, const char* op) {
  std::vector<int64_t> values = RequiredInts(info, name, op);
  if (values.size() != length) {
    Fail(op, std::string("attribute '") + name + "' has " + std::to_string(values.size()) + " values, expected " +
                 std::to_string(length) + " (" + what + ")");
  }
  for (int64_t value : values) {
    if (value < 1 || static_cast<uint64_t>(value) >= kPrime) {
      Fail(op, std::string("attribute '") + name + "' holds " + std::to_string(value) + ", outside [1, 2^31 - 2]");
    }
  }
  return values;
}

void ReadHash(const Ort::ConstKernelInfo& info, const char* op, EmbeddingAttributes* attrs) {
  if (HasInts(info, "b")) {
    Fail(op, "the node carries hash version 1 coefficients (attribute 'b'); this library implements ai.robe "
             "version 2 (hash version 2): export the model again");
  }
  const size_t features = RequiredInts(info, "a1", op).size();
  if (features == 0) Fail(op, "attributes a1, a2, c must hold one value per feature, got none");
  const std::vector<int64_t> a1 = Coefficients(info, "a1", features, "one per feature", op);
  const std::vector<int64_t> a2 = Coefficients(info, "a2", features, "one per feature, as a1", op);
  const std::vector<int64_t> c = Coefficients(info, "c", features, "one per feature, as a1", op);
  const size_t blocks = static_cast<size_t>(attrs->NumBlocks());
  const std::vector<int64_t> g1 = Coefficients(info, "g1", blocks, "one per block, embedding_dim / block_size", op);
  const std::vector<int64_t> g2 = Coefficients(info, "g2", blocks, "one per block, embedding_dim / block_size", op);
  for (size_t f = 0; f < features; ++f) {
    attrs->hash.push_back({static_cast<uint64_t>(a1[f]), static_cast<uint64_t>(a2[f]), static_cast<uint64_t>(c[f])});
  }
  for (size_t b = 0; b < blocks; ++b) attrs->blocks.push_back({static_cast<uint64_t>(g1[b]), static_cast<uint64_t>(g2[b])});
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

}  // namespace

void Fail(const char* op, const std::string& message) {
  throw Ort::Exception(std::string(op) + ": " + message, ORT_INVALID_ARGUMENT);
}

EmbeddingAttributes ReadEmbeddingAttributes(const OrtKernelInfo* raw_info, const char* op, bool lma) {
  const Ort::ConstKernelInfo info{raw_info};
  EmbeddingAttributes attrs;
  attrs.dim = RequiredInt(info, "embedding_dim", op);
  attrs.block_size = RequiredInt(info, "block_size", op);
  if (attrs.dim < 1 || attrs.block_size < 1 || attrs.dim % attrs.block_size != 0) {
    Fail(op, "block_size " + std::to_string(attrs.block_size) + " must be >= 1 and divide embedding_dim " +
                 std::to_string(attrs.dim));
  }
  if (attrs.dim >= (int64_t{1} << 31)) Fail(op, "embedding_dim must be below 2^31");
  ReadHash(info, op, &attrs);
  if (lma) {
    // k minhashes of 8 bits make a code below 2^(8k): k <= 6 keeps it below 2^48.
    attrs.keys_per_block = OptionalInt(info, "keys_per_block", kDefaultKeysPerBlock);
    if (attrs.keys_per_block < 1 || attrs.keys_per_block > kMaxKeysPerBlock) {
      Fail(op, "keys_per_block must be in [1, " + std::to_string(kMaxKeysPerBlock) + "], got " +
                   std::to_string(attrs.keys_per_block));
    }
  }
  return attrs;
}

int64_t CheckIds(const Ort::ConstValue& ids, int64_t num_features, const char* op) {
  const std::vector<int64_t> shape = ids.GetTensorTypeAndShapeInfo().GetShape();
  if (shape.size() != 2 || shape[1] != num_features) {
    Fail(op, "ids must be int64 [batch, " + std::to_string(num_features) + "] (one column per feature), got " +
                 ShapeText(shape));
  }
  return shape[0];
}

int64_t CheckMemory(const Ort::ConstValue& memory, int64_t block_size, const char* op) {
  const std::vector<int64_t> shape = memory.GetTensorTypeAndShapeInfo().GetShape();
  if (shape.size() != 1) Fail(op, "M must be a float vector [m], got shape " + ShapeText(shape));
  if (shape[0] < block_size) {
    Fail(op, "M holds " + std::to_string(shape[0]) + " floats, fewer than one block of " + std::to_string(block_size));
  }
  return shape[0];
}

int64_t CheckVector(const Ort::ConstValue& value, const char* name, const char* op) {
  const std::vector<int64_t> shape = value.GetTensorTypeAndShapeInfo().GetShape();
  if (shape.size() != 1) Fail(op, std::string(name) + " must be a vector, got shape " + ShapeText(shape));
  return shape[0];
}

void CheckOffsets(const int64_t* offsets, int64_t count, int64_t num_features, int64_t num_keys, const char* op) {
  bool valid = count == num_features + 1 && offsets[0] == 0 && offsets[count - 1] == num_keys;
  for (int64_t f = 0; valid && f < num_features; ++f) valid = offsets[f] <= offsets[f + 1];
  if (!valid) {
    Fail(op, "offsets must be " + std::to_string(num_features + 1) + " non-decreasing values from 0 to " +
                 std::to_string(num_keys) + " (the number of keys)");
  }
}

EmbeddingInputs CheckRobeInputs(const Ort::KernelContext& ctx, const EmbeddingAttributes& attrs, const char* op) {
  const Ort::ConstValue ids = ctx.GetInput(0);
  const Ort::ConstValue memory = ctx.GetInput(1);
  const int64_t batch = CheckIds(ids, attrs.NumFeatures(), op);
  const int64_t memory_size = CheckMemory(memory, attrs.block_size, op);
  return {ids.GetTensorData<int64_t>(), memory.GetTensorData<float>(), batch, memory_size};
}

LmaInputs CheckLmaInputs(const Ort::KernelContext& ctx, const EmbeddingAttributes& attrs, const char* op) {
  const EmbeddingInputs embedding = CheckRobeInputs(ctx, attrs, op);
  const Ort::ConstValue keys = ctx.GetInput(2);
  const Ort::ConstValue offsets = ctx.GetInput(3);
  const Ort::ConstValue signatures = ctx.GetInput(4);
  const int64_t num_keys = CheckVector(keys, "keys", op);
  const std::vector<int64_t> shape = signatures.GetTensorTypeAndShapeInfo().GetShape();
  if (shape.size() != 2 || shape[0] != num_keys) {
    Fail(op, "signatures must be uint8 [" + std::to_string(num_keys) + ", S] (one row per key), got " +
                 ShapeText(shape));
  }
  if (shape[1] < attrs.keys_per_block || shape[1] > kMaxMinhashes) {
    Fail(op, "signatures hold " + std::to_string(shape[1]) + " minhashes per token; keys_per_block " +
                 std::to_string(attrs.keys_per_block) + " needs between k and " + std::to_string(kMaxMinhashes));
  }
  const int64_t* offset_data = offsets.GetTensorData<int64_t>();
  CheckOffsets(offset_data, CheckVector(offsets, "offsets", op), attrs.NumFeatures(), num_keys, op);
  return {embedding, keys.GetTensorData<int64_t>(), offset_data, signatures.GetTensorData<uint8_t>(), num_keys,
          shape[1]};
}

VocabInputs CheckVocabInputs(const Ort::KernelContext& ctx, const char* op) {
  const Ort::ConstValue ids = ctx.GetInput(0);
  const Ort::ConstValue keys = ctx.GetInput(1);
  const Ort::ConstValue offsets = ctx.GetInput(2);
  // F comes from the offsets: VocabLookup has no per-feature attributes.
  const int64_t num_features = CheckVector(offsets, "offsets", op) - 1;
  if (num_features < 1) Fail(op, "offsets must hold F + 1 >= 2 values");
  const int64_t batch = CheckIds(ids, num_features, op);
  const int64_t num_keys = CheckVector(keys, "keys", op);
  const int64_t* offset_data = offsets.GetTensorData<int64_t>();
  CheckOffsets(offset_data, num_features + 1, num_features, num_keys, op);
  return {ids.GetTensorData<int64_t>(), keys.GetTensorData<int64_t>(), offset_data, batch, num_features, num_keys};
}

void FailInvalidId(const char* op, int64_t id, int64_t index, int64_t num_features) {
  Fail(op, "id " + std::to_string(id) + " at [" + std::to_string(index / num_features) + ", " +
               std::to_string(index % num_features) + "] is outside [0, 2^62)");
}

namespace {

// ids [B, F] -> (B, F) dims, or false when the shape is unknown (rank 0 stands for "no shape").
bool IdsDims(Ort::ShapeInferContext& ctx, Ort::ShapeInferContext::Shape* dims, const char* op) {
  const Ort::ShapeInferContext::Shape& ids = ctx.GetInputShape(0);
  if (ids.empty()) return false;
  if (ids.size() != 2) Fail(op, "ids must have rank 2 [batch, features], got rank " + std::to_string(ids.size()));
  *dims = ids;
  return true;
}

// Symbolic dims keep their name with the value -1 (unknown), which every runtime version accepts.
void SetOutputShape(OrtShapeInferContext* raw, const Ort::ShapeInferContext::Shape& shape,
                    ONNXTensorElementDataType type) {
  std::vector<int64_t> values;
  std::vector<const char*> names;
  for (const auto& dim : shape) {
    values.push_back(dim.IsInt() ? dim.AsInt() : -1);
    names.push_back(dim.IsInt() ? "" : dim.AsSym());
  }
  const OrtApi& api = Ort::GetApi();
  OrtTensorTypeAndShapeInfo* created = nullptr;
  Ort::ThrowOnError(api.CreateTensorTypeAndShapeInfo(&created));
  Ort::TensorTypeAndShapeInfo info{created};  // released on every path
  Ort::ThrowOnError(api.SetTensorElementType(info, type));
  Ort::ThrowOnError(api.SetDimensions(info, values.data(), values.size()));
  Ort::ThrowOnError(api.SetSymbolicDimensions(info, names.data(), names.size()));
  Ort::ThrowOnError(api.ShapeInferContext_SetOutputTypeShape(raw, 0, info));
}

}  // namespace

void InferEmbeddingShape(Ort::ShapeInferContext& ctx, OrtShapeInferContext* raw, const char* op) {
  const int64_t dim = ctx.GetAttrInt("embedding_dim");
  if (dim < 1) Fail(op, "embedding_dim must be >= 1, got " + std::to_string(dim));
  Ort::ShapeInferContext::Shape shape;
  if (!IdsDims(ctx, &shape, op)) return;
  shape.emplace_back(dim);  // (B, F, d)
  SetOutputShape(raw, shape, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
}

void InferVocabShape(Ort::ShapeInferContext& ctx, OrtShapeInferContext* raw, const char* op) {
  Ort::ShapeInferContext::Shape shape;
  if (!IdsDims(ctx, &shape, op)) return;
  SetOutputShape(raw, shape, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64);  // (B, F)
}

}  // namespace robe
