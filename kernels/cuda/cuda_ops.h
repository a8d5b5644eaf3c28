// CUDA kernels of RobeEmbedding, LmaEmbedding and VocabLookup for CUDAExecutionProvider, launched on the
// compute stream ORT hands to the kernel.
#pragma once

#include "onnxruntime_cxx_api.h"

namespace robe::cuda {

// Adds the CUDA kernels of every ai.robe op to the domain (the op objects live as long as the library).
void RegisterOps(Ort::CustomOpDomain& domain);

}  // namespace robe::cuda
