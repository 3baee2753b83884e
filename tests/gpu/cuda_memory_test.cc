// CUDA memory layer: round trips through device memory. Skips without a GPU.
#include "core/cuda/memory.h"

#include <gtest/gtest.h>

#include "core/tensor.h"

namespace peng {
namespace {

TEST(CudaMemory, RoundTripAndZero) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  Tensor h = Tensor::empty({1000, 3});
  for (int64_t i = 0; i < h.numel(); ++i) h.data<float>()[i] = float(i) * 0.5f;
  Tensor d = h.to(Device::cuda(0));
  EXPECT_TRUE(d.device().is_cuda());
  Tensor back = d.to(Device::cpu());
  for (int64_t i = 0; i < h.numel(); ++i) ASSERT_EQ(back.data<float>()[i], float(i) * 0.5f);
  // Zero an odd-sized, unaligned view: only its bytes change.
  Tensor part = d.flat_view(1, {2999 - 1});
  part.zero();
  back = d.to(Device::cpu());
  EXPECT_EQ(back.data<float>()[0], 0.0f);
  EXPECT_EQ(back.data<float>()[1], 0.0f);
  EXPECT_EQ(back.data<float>()[2998], 0.0f);
  EXPECT_EQ(back.data<float>()[2999], 2999 * 0.5f);
}

TEST(CudaMemory, BuildKnowsWhetherItHasCuda) {
  if (!cuda::compiled_with_cuda()) {
    EXPECT_THROW(Tensor::empty({4}, DType::kF32, Device::cuda(0)), Error);
  } else {
    SUCCEED();
  }
}

}  // namespace
}  // namespace peng
