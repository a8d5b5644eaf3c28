// Entry point of the ai.robe custom-op library: assembles the domain from the per-device kernels and
// turns any failure into an OrtStatus. The library never links libonnxruntime: ORT_API_MANUAL_INIT makes
// the C++ API wait for the OrtApi that the loading runtime hands to RegisterCustomOps.
#include <mutex>

#include "common/op_support.h"
#include "cpu/cpu_ops.h"
#ifdef ROBE_WITH_CUDA
#include "cuda/cuda_ops.h"
#endif

#define ROBE_STRINGIFY_(x) #x
#define ROBE_STRINGIFY(x) ROBE_STRINGIFY_(x)

namespace {

// One domain for every session: ORT keeps a pointer to it, so it lives as long as the library.
Ort::CustomOpDomain& RobeDomain() {
  static Ort::CustomOpDomain domain{robe::kDomain};
  static std::once_flag filled;
  std::call_once(filled, [] {
    robe::cpu::RegisterOps(domain);
#ifdef ROBE_WITH_CUDA
    robe::cuda::RegisterOps(domain);
#endif
  });
  return domain;
}

}  // namespace

// The only exported symbol (the library builds with hidden visibility; ORT_EXPORT is empty on Linux).
extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL RegisterCustomOps(
    OrtSessionOptions* options, const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    // Every runtime serves API version 1, enough to say why loading failed.
    return api_base->GetApi(1)->CreateStatus(
        ORT_FAIL, "ai.robe: this onnxruntime does not serve ORT_API_VERSION " ROBE_STRINGIFY(ORT_API_VERSION)
                  "; onnxruntime >= 1.21 is required");
  }
  Ort::InitApi(api);
  return robe::Guard([&] { Ort::UnownedSessionOptions{options}.Add(RobeDomain()); });
}
