// backend_for: the one place that maps a Device to its Backend (the CPU backend, or the
// CUDA backend of a GPU when this build has one; cuda/no_cuda.cc otherwise throws).
#include "peng/core/backend.h"
#include "peng/core/cuda/cuda_backend.h"

namespace peng {

Backend& backend_for(Device device) {
  if (device.is_cpu()) return cpu_backend();
  return cuda::backend(device.index);
}

}  // namespace peng
