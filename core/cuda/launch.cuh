// CudaLaunch: how ops/*.cu run the kernel drivers of kernels/*.cuh on a GPU.
//
// A driver (e.g. kernels::layernorm_forward) is a host template over a `Launch` that
// provides two things; tests/cuda_emu provides the same two on the CPU:
//   launch(grid, block, kernel, args...)  queue kernel<<<grid, block, 0, stream>>>(args...)
//   launch.scratch<T>(n)                  n elements of temporary device memory, valid
//                                         until the Launch is destroyed (stream-ordered)
// Kernels use static shared memory only (no dynamic shared memory), so a launch is fully
// described by its grid and block.
#pragma once

#include <cuda_runtime.h>

#include <vector>

#include "peng/core/error.h"

namespace peng::cuda {

// Throws peng::Error naming `what` and the CUDA error.
void check_cuda(cudaError_t err, const char* what);

class CudaLaunch {
 public:
  explicit CudaLaunch(int device);
  ~CudaLaunch();  // frees the scratch memory, ordered on the stream
  CudaLaunch(const CudaLaunch&) = delete;
  CudaLaunch& operator=(const CudaLaunch&) = delete;

  template <class... Params, class... Args>
  void operator()(dim3 grid, dim3 block, void (*kernel)(Params...), Args... args) {
    if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;  // empty tensors: nothing to do
    kernel<<<grid, block, 0, stream_>>>(Params(args)...);
    check_cuda(cudaGetLastError(), "kernel launch");
  }

  template <class T>
  T* scratch(size_t n) {
    return static_cast<T*>(scratch_bytes(n * sizeof(T)));
  }

  cudaStream_t stream() const { return stream_; }

 private:
  void* scratch_bytes(size_t nbytes);
  int device_;
  cudaStream_t stream_;
  std::vector<void*> scratch_;
};

}  // namespace peng::cuda
