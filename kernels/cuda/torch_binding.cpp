// PyTorch extension over the C ABI of the CUDA launchers (c_api.h), built by kernels/torch_ext.py with
// torch.utils.cpp_extension. It needs no CUDA header and no CUDA build of PyTorch to compile: tensors are
// checked in kernels/torch_ext.py, the stream comes from Python as an integer, a plan as an integer handle.
#include <torch/extension.h>

#include <cstdint>

#include "cuda/c_api.h"

namespace {

void Check(int status) { TORCH_CHECK(status == 0, robe_cuda_last_error()); }

void* Pointer(int64_t value) { return reinterpret_cast<void*>(static_cast<intptr_t>(value)); }

int64_t PlanCreate(const torch::Tensor& a1, const torch::Tensor& a2, const torch::Tensor& c, const torch::Tensor& g1,
                   const torch::Tensor& g2, const c10::optional<torch::Tensor>& offsets, int64_t num_keys) {
  void* plan = nullptr;
  Check(robe_cuda_plan_create(a1.data_ptr<int64_t>(), a2.data_ptr<int64_t>(), c.data_ptr<int64_t>(), a1.numel(),
                              g1.data_ptr<int64_t>(), g2.data_ptr<int64_t>(), g1.numel(),
                              offsets ? offsets->data_ptr<int64_t>() : nullptr, num_keys, &plan));
  return static_cast<int64_t>(reinterpret_cast<intptr_t>(plan));
}

void PlanDestroy(int64_t plan) { robe_cuda_plan_destroy(Pointer(plan)); }

void Robe(int64_t plan, const torch::Tensor& ids, const torch::Tensor& memory, int64_t dim, int64_t block_size,
          torch::Tensor& out, int64_t stream) {
  Check(robe_cuda_robe_embedding(Pointer(plan), ids.data_ptr<int64_t>(), ids.size(0), memory.data_ptr<float>(),
                                 memory.numel(), dim, block_size, out.data_ptr<float>(), Pointer(stream)));
}

void Lma(int64_t plan, const torch::Tensor& ids, const torch::Tensor& memory, int64_t dim, int64_t block_size,
         const torch::Tensor& keys, const torch::Tensor& signatures, int64_t keys_per_block, torch::Tensor& out,
         int64_t stream) {
  Check(robe_cuda_lma_embedding(Pointer(plan), ids.data_ptr<int64_t>(), ids.size(0), memory.data_ptr<float>(),
                                memory.numel(), dim, block_size, keys.data_ptr<int64_t>(),
                                signatures.data_ptr<uint8_t>(), signatures.size(1), keys_per_block,
                                out.data_ptr<float>(), Pointer(stream)));
}

void Vocab(const torch::Tensor& ids, const torch::Tensor& keys, const torch::Tensor& offsets, torch::Tensor& out,
           int64_t stream) {
  Check(robe_cuda_vocab_lookup(ids.data_ptr<int64_t>(), ids.size(0), ids.size(1), keys.data_ptr<int64_t>(),
                               keys.numel(), offsets.data_ptr<int64_t>(), out.data_ptr<int64_t>(), Pointer(stream)));
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("plan_create", &PlanCreate, "validate hash tables (and LMA offsets) once; returns a plan handle");
  m.def("plan_destroy", &PlanDestroy, "free a plan");
  m.def("robe", &Robe, "RobeEmbedding forward into out (CUDA tensors)");
  m.def("lma", &Lma, "LmaEmbedding forward into out");
  m.def("vocab", &Vocab, "VocabLookup forward into out (offsets on the host)");
}
