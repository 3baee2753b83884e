// Activation buffers that layers keep between forward and backward.
#pragma once

#include "peng/core/tensor.h"

namespace peng {

// Makes `t` an f32 tensor of `shape` on `device`, reallocating only when the shape
// (or device) changes, so steady-state training allocates nothing. Returns t.
inline Tensor& ensure_buffer(Tensor& t, const Shape& shape, Device device,
                             DType dtype = DType::kF32) {
  if (!t.defined() || t.shape() != shape || !(t.device() == device) || t.dtype() != dtype) {
    t = Tensor::empty(shape, dtype, device);
  }
  return t;
}

}  // namespace peng
