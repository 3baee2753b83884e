// CudaBackend's lifetime and its Launch.
#include "peng/core/cuda/cuda_backend.h"

#include <cublasLt.h>

#include <memory>
#include <mutex>
#include <vector>

#include "peng/core/cuda/launch.cuh"
#include "peng/core/cuda/memory.h"

namespace peng::cuda {

void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw Error(detail::concat("CUDA ", what, ": ", cudaGetErrorName(err), " (",
                               cudaGetErrorString(err), ")"));
  }
}

CudaLaunch::CudaLaunch(int device)
    : device_(device), stream_(static_cast<cudaStream_t>(cuda::stream(device))) {
  check_cuda(cudaSetDevice(device), "cudaSetDevice");
}

CudaLaunch::~CudaLaunch() {
  for (void* p : scratch_) cudaFreeAsync(p, stream_);
}

void* CudaLaunch::scratch_bytes(size_t nbytes) {
  void* p = nullptr;
  check_cuda(cudaMallocAsync(&p, nbytes ? nbytes : 1, stream_), "cudaMallocAsync (scratch)");
  scratch_.push_back(p);
  return p;
}

CudaBackend::CudaBackend(int device) : device_(device) {
  check_cuda(cudaSetDevice(device), "cudaSetDevice");
  cublasLtHandle_t h = nullptr;
  if (cublasLtCreate(&h) != CUBLAS_STATUS_SUCCESS) {
    throw Error(detail::concat("cuBLASLt: cannot create a handle on cuda:", device));
  }
  lt_handle_ = h;
}

CudaBackend::~CudaBackend() {
  if (lt_handle_) cublasLtDestroy(static_cast<cublasLtHandle_t>(lt_handle_));
}

CudaBackend& backend(int device) {
  static std::mutex mu;
  static std::vector<std::unique_ptr<CudaBackend>> backends;
  std::lock_guard<std::mutex> lock(mu);
  const int n = device_count();
  PENG_INPUT_CHECK(device >= 0 && device < n, "no CUDA device cuda:", device, " (this machine has ",
                   n, ")");
  if (backends.size() < size_t(n)) backends.resize(size_t(n));
  if (!backends[size_t(device)]) backends[size_t(device)] = std::make_unique<CudaBackend>(device);
  return *backends[size_t(device)];
}

}  // namespace peng::cuda
