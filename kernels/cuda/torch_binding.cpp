// PyTorch extension over the C ABI of the CUDA launchers (c_api.h), built by kernels/torch_ext.py with
// torch.utils.cpp_extension. It needs no CUDA header and no CUDA build of PyTorch to compile: tensors are
// checked in kernels/torch_ext.py, the stream comes from Python as an integer.
#include <torch/extension.h>

#include <cstdint>

#include "cuda/c_api.h"

namespace {

void Check(int status) { TORCH_CHECK(status == 0, robe_cuda_last_error()); }

void* Stream(int64_t stream) { return reinterpret_cast<void*>(static_cast<intptr_t>(stream)); }

void Robe(const torch::Tensor& ids, const torch::Tensor& memory, const torch::Tensor& a1, const torch::Tensor& a2,
          const torch::Tensor& b, const torch::Tensor& c, int64_t dim, int64_t block_size, torch::Tensor& out,
          int64_t stream) {
  Check(robe_cuda_robe_embedding(ids.data_ptr<int64_t>(), ids.size(0), ids.size(1), a1.data_ptr<int64_t>(),
                                 a2.data_ptr<int64_t>(), b.data_ptr<int64_t>(), c.data_ptr<int64_t>(),
                                 memory.data_ptr<float>(), memory.numel(), dim, block_size, out.data_ptr<float>(),
                                 Stream(stream)));
}

void Lma(const torch::Tensor& ids, const torch::Tensor& memory, const torch::Tensor& keys, const torch::Tensor& offsets,
         const torch::Tensor& signatures, const torch::Tensor& a1, const torch::Tensor& a2, const torch::Tensor& b,
         const torch::Tensor& c, int64_t dim, int64_t block_size, int64_t keys_per_block, torch::Tensor& out,
         int64_t stream) {
  Check(robe_cuda_lma_embedding(ids.data_ptr<int64_t>(), ids.size(0), ids.size(1), a1.data_ptr<int64_t>(),
                                a2.data_ptr<int64_t>(), b.data_ptr<int64_t>(), c.data_ptr<int64_t>(),
                                memory.data_ptr<float>(), memory.numel(), dim, block_size, keys.data_ptr<int64_t>(),
                                signatures.data_ptr<int64_t>(), keys.numel(), offsets.data_ptr<int64_t>(),
                                keys_per_block, out.data_ptr<float>(), Stream(stream)));
}

void Vocab(const torch::Tensor& ids, const torch::Tensor& keys, const torch::Tensor& offsets, torch::Tensor& out,
           int64_t stream) {
  Check(robe_cuda_vocab_lookup(ids.data_ptr<int64_t>(), ids.size(0), ids.size(1), keys.data_ptr<int64_t>(),
                               keys.numel(), offsets.data_ptr<int64_t>(), out.data_ptr<int64_t>(), Stream(stream)));
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("robe", &Robe, "RobeEmbedding forward into out (CUDA tensors; hash arrays and offsets on the host)");
  m.def("lma", &Lma, "LmaEmbedding forward into out");
  m.def("vocab", &Vocab, "VocabLookup forward into out");
}
