// CUDA device memory: the part of the CUDA backend the core Tensor needs.
// Implemented in memory.cu when peng is built with CUDA, and by no_cuda.cc
// (which throws a clear peng::Error) otherwise, so every configuration links.
#pragma once

#include <cstddef>

namespace peng::cuda {

// Number of visible CUDA devices; 0 without a driver, a device or CUDA support.
int device_count();
// True when this build contains the CUDA backend.
bool compiled_with_cuda();

void* allocate(size_t nbytes, int device);
void deallocate(void* ptr, int device) noexcept;

enum class CopyKind { kHostToDevice, kDeviceToHost, kDeviceToDevice };
// Synchronous copy on the legacy default stream.
void copy(void* dst, const void* src, size_t nbytes, CopyKind kind, int device);
// Fills nbytes of device memory with zero bytes.
void memset_zero(void* ptr, size_t nbytes, int device);

}  // namespace peng::cuda
