// CUDA device memory layer: allocation, copies and zero-fill for Tensor storage.
// Errors from the runtime become peng::Error naming the call and the device.
#include <cuda_runtime.h>

#include "core/cuda/memory.h"
#include "core/error.h"

namespace peng::cuda {

namespace {
void check(cudaError_t err, const char* what, int device) {
  if (err != cudaSuccess) {
    throw Error(
        detail::concat("CUDA ", what, " on device ", device, ": ", cudaGetErrorString(err)));
  }
}

// Makes `device` current for the calling thread.
void use_device(int device) { check(cudaSetDevice(device), "cudaSetDevice", device); }
}  // namespace

bool compiled_with_cuda() { return true; }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver / no device" error
    return 0;
  }
  return n;
}

void* allocate(size_t nbytes, int device) {
  use_device(device);
  void* p = nullptr;
  if (nbytes == 0) return nullptr;
  check(cudaMalloc(&p, nbytes), "cudaMalloc", device);
  return p;
}

void deallocate(void* ptr, int device) noexcept {
  if (!ptr) return;
  cudaSetDevice(device);
  cudaFree(ptr);
}

void copy(void* dst, const void* src, size_t nbytes, CopyKind kind, int device) {
  use_device(device);
  cudaMemcpyKind k = kind == CopyKind::kHostToDevice   ? cudaMemcpyHostToDevice
                     : kind == CopyKind::kDeviceToHost ? cudaMemcpyDeviceToHost
                                                       : cudaMemcpyDeviceToDevice;
  check(cudaMemcpy(dst, src, nbytes, k), "cudaMemcpy", device);
}

// Grid-stride zero fill, 16 bytes per thread where aligned (the first real kernel of
// the CUDA backend; cudaMemset would do, but the build must compile device code).
__global__ void zero_kernel(uint4* p16, size_t n16, unsigned char* tail, size_t ntail) {
  size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
  size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t j = i; j < n16; j += stride) p16[j] = make_uint4(0, 0, 0, 0);
  for (size_t j = i; j < ntail; j += stride) tail[j] = 0;
}

void memset_zero(void* ptr, size_t nbytes, int device) {
  if (nbytes == 0) return;
  use_device(device);
  size_t n16 = (reinterpret_cast<uintptr_t>(ptr) % 16 == 0) ? nbytes / 16 : 0;
  size_t ntail = nbytes - n16 * 16;
  unsigned blocks = unsigned(std::min<size_t>((std::max(n16, ntail) + 255) / 256, 4096));
  zero_kernel<<<blocks, 256>>>(static_cast<uint4*>(ptr), n16,
                               static_cast<unsigned char*>(ptr) + n16 * 16, ntail);
  check(cudaGetLastError(), "zero_kernel launch", device);
  check(cudaDeviceSynchronize(), "zero_kernel", device);
}

}  // namespace peng::cuda
