// Helpers of the GPU op tests (tests/gpu/*_ops_test.cc): each CudaBackend op against the CPU
// backend on random inputs, outputs poisoned so every element must be written. Skip cleanly
// without a device.
#pragma once

#include <gtest/gtest.h>

#include "peng/core/backend.h"
#include "peng/core/cuda/memory.h"
#include "tests/kernels/kernel_check.h"

#define PENG_REQUIRE_GPU()                                                   \
  do {                                                                       \
    if (::peng::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

namespace peng::gpu_test {

using kernel_test::dyadic;
using kernel_test::kF32;
using kernel_test::kF32LongReduction;
using kernel_test::padded_logits;
using kernel_test::poisoned;
using kernel_test::random;
using kernel_test::random_targets;
using kernel_test::random_tokens;
using kernel_test::relative_error;
using kernel_test::rope_tables;
using kernel_test::RopeCase;
using kernel_test::same_bits;
using kernel_test::ulps_of_operands;
using kernel_test::with_upper;

inline Backend& gpu() { return backend_for(Device::cuda(0)); }
inline Tensor on_gpu(const Tensor& t) { return t.to(Device::cuda(0)); }
inline Tensor on_cpu(const Tensor& t) { return t.to(Device::cpu()); }

}  // namespace peng::gpu_test
