// Argument checks shared by the CUDA backend's ops: every tensor on the backend's GPU, with
// the dtype and shape the op documents (core/backend.h). Failures throw peng::Error naming
// the op and the tensor.
#pragma once

#include "core/cuda/cuda_backend.h"

namespace peng::cuda::ops {

void check_tensor(const CudaBackend& be, const char* op, const char* name, const Tensor& t,
                  DType dtype = DType::kF32);
void check_shape(const CudaBackend& be, const char* op, const char* name, const Tensor& t,
                 const Shape& shape, DType dtype = DType::kF32);
// Rows of a tensor viewed as (N, C) with C its last dimension.
int64_t rows_of(const Tensor& t);

}  // namespace peng::cuda::ops
