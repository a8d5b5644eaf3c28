// CPU kernels of RobeEmbedding, LmaEmbedding and VocabLookup (ORT's intra-op thread pool).
#pragma once

#include "onnxruntime_cxx_api.h"

namespace robe::cpu {

// Adds the CPU kernels of every ai.robe op to the domain (the op objects live as long as the library).
void RegisterOps(Ort::CustomOpDomain& domain);

}  // namespace robe::cpu
