// Vectorized row gather for the fair GPU benchmark (loadtest/gpu_bench.py): out[i, :] = table[rows[i], :].
//
// Plain C ABI (called through ctypes with raw pointers and a stream), so it builds with nvcc alone:
//   nvcc -O3 -shared -Xcompiler -fPIC -gencode arch=compute_90,code=sm_90 gather.cu -o libgather.so
// One warp per output row; lanes move 16-byte float4 words when the row width and pointers allow it, else
// single floats. The same kernel reads a table in device memory (full-hbm-vec) or a host table registered
// with cudaHostRegister and read over PCIe through its mapped device pointer (full-host-uva). Launches go
// to the caller's stream (PyTorch's current stream), so CUDA graphs can capture them.
#include <cstdint>
#include <cuda_runtime.h>

namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;

__global__ void gather_rows_vec4(const float4* __restrict__ table, const int64_t* __restrict__ rows,
                                 float4* __restrict__ out, int64_t count, int64_t words) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (row >= count) return;
  const float4* from = table + rows[row] * words;
  float4* to = out + row * words;
  for (int64_t w = threadIdx.x % kWarp; w < words; w += kWarp) to[w] = from[w];
}

__global__ void gather_rows_scalar(const float* __restrict__ table, const int64_t* __restrict__ rows,
                                   float* __restrict__ out, int64_t count, int64_t dim) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (row >= count) return;
  const float* from = table + rows[row] * dim;
  float* to = out + row * dim;
  for (int64_t j = threadIdx.x % kWarp; j < dim; j += kWarp) to[j] = from[j];
}

}  // namespace

extern "C" {

// table: [R, dim] float32 (device memory or a mapped host pointer); rows: [count] int64 on the device;
// out: [count, dim] float32 on the device. Returns a cudaError_t (0 = launched).
int robeserve_gather_rows(const float* table, const int64_t* rows, float* out, int64_t count, int64_t dim,
                          void* stream) {
  if (count <= 0) return 0;
  if (dim <= 0 || table == nullptr || rows == nullptr || out == nullptr) return cudaErrorInvalidValue;
  const dim3 block(kWarp * kWarpsPerBlock);
  const dim3 grid(static_cast<unsigned>((count + kWarpsPerBlock - 1) / kWarpsPerBlock));
  auto s = static_cast<cudaStream_t>(stream);
  const bool aligned = dim % 4 == 0 && reinterpret_cast<uintptr_t>(table) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(out) % 16 == 0;
  if (aligned) {
    gather_rows_vec4<<<grid, block, 0, s>>>(reinterpret_cast<const float4*>(table), rows,
                                           reinterpret_cast<float4*>(out), count, dim / 4);
  } else {
    gather_rows_scalar<<<grid, block, 0, s>>>(table, rows, out, count, dim);
  }
  return static_cast<int>(cudaGetLastError());
}

// Page-lock [host, host + bytes) and map it into the device's address space; *device gets its device
// pointer. Returns a cudaError_t.
int robeserve_register_host(void* host, uint64_t bytes, void** device) {
  cudaError_t status = cudaHostRegister(host, bytes, cudaHostRegisterMapped | cudaHostRegisterReadOnly);
  if (status != cudaSuccess) {
    cudaGetLastError();
    status = cudaHostRegister(host, bytes, cudaHostRegisterMapped);
  }
  if (status != cudaSuccess) return static_cast<int>(status);
  return static_cast<int>(cudaHostGetDevicePointer(device, host, 0));
}

int robeserve_unregister_host(void* host) { return static_cast<int>(cudaHostUnregister(host)); }

const char* robeserve_error_string(int status) { return cudaGetErrorString(static_cast<cudaError_t>(status)); }

}  // extern "C"
