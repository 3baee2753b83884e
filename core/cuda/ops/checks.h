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
// `out` must not share memory with `in` (outputs written before `in` is read), as the CPU
// backend checks (cpu::check_no_overlap): same condition, same message.
inline void check_no_overlap(const char* op, const char* out_name, const Tensor& out,
                             const char* in_name, const Tensor& in) {
  auto o = static_cast<const char*>(out.raw_data());
  auto i = static_cast<const char*>(in.raw_data());
  const bool overlap = o < i + in.nbytes() && i < o + out.nbytes();
  PENG_CHECK(!overlap || out.nbytes() == 0 || in.nbytes() == 0, op, ": ", out_name,
             " must not share memory with ", in_name);
}

}  // namespace peng::cuda::ops
