// Argument checks of the CUDA backend's ops: core/op_checks.h's (the CPU backend's conditions
// and messages) on the backend's GPU, with the dtype and shape the op documents
// (core/backend.h). Failures throw peng::Error naming the op and the tensor.
#pragma once

#include "peng/core/cuda/cuda_backend.h"
#include "peng/core/op_checks.h"

namespace peng::cuda::ops {

inline void check_tensor(const CudaBackend& be, const char* op, const char* name, const Tensor& t,
                         DType dtype = DType::kF32) {
  checks::check_tensor(be.device(), op, name, t, dtype);
}
inline void check_shape(const CudaBackend& be, const char* op, const char* name, const Tensor& t,
                        const Shape& shape, DType dtype = DType::kF32) {
  checks::check_shape(be.device(), op, name, t, shape, dtype);
}
using checks::check_no_overlap;
using checks::rows_of;

}  // namespace peng::cuda::ops
