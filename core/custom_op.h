// Ops a program adds to the backends without editing them (MLX's custom primitives, PyTorch's
// TORCH_LIBRARY): an op is a name with one implementation per device type, registered at the
// start of main and called by layers through call_op. The CPU implementation of a new op is
// plain C++ over Tensor::data<T>(); a CUDA one launches on the device's stream
// (cuda::stream, core/cuda/memory.h) from a .cu file of the program.
//
//   register_op("relu2", DeviceType::kCpu, [](Backend&, OpArgs in, OpOutputs out) {
//     const float* x = in[0]->data<float>();
//     float* y = out[0]->data<float>();
//     for (int64_t i = 0; i < in[0]->numel(); ++i) y[i] = x[i] > 0 ? x[i] * x[i] : 0;
//   });
//   call_op(be, "relu2", {&pre}, {&act});
//
// Contract: outputs are allocated by the caller with their shapes and dtypes (the op
// overwrites them unless it documents accumulation); an implementation checks what it
// relies on and throws InputError naming the op. call_op throws InputError naming the op
// and the device when nothing is registered for the backend's device type.
#pragma once

#include <functional>
#include <initializer_list>
#include <span>
#include <string>

#include "peng/core/dtype.h"
#include "peng/core/tensor.h"

namespace peng {

class Backend;

using OpArgs = std::span<const Tensor* const>;
using OpOutputs = std::span<Tensor* const>;
using OpFn = std::function<void(Backend& be, OpArgs inputs, OpOutputs outputs)>;

// Registers `fn` as op `name` on devices of `type` (InputError: empty name, no function, or
// that op already registered for that device type).
void register_op(const std::string& name, DeviceType type, OpFn fn);
// Whether op `name` has an implementation for devices of `type`.
bool has_op(const std::string& name, DeviceType type);
// Runs op `name` for `be`'s device on `inputs`, writing `outputs`.
void call_op(Backend& be, const std::string& name, std::initializer_list<const Tensor*> inputs,
             std::initializer_list<Tensor*> outputs);

}  // namespace peng
