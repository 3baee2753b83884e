// LR schedules and gradient clipping.
#include <gtest/gtest.h>

#include <cmath>

#include "peng/optim/grad_clip.h"
#include "peng/optim/lr_schedule.h"

namespace peng {
namespace {

TEST(LrSchedule, ConstantWithWarmup) {
  LrSchedule s{.kind = LrSchedule::Kind::kConstant, .lr = 1.0f, .warmup = 4, .total = 10};
  EXPECT_FLOAT_EQ(s.at(0), 0.25f);
  EXPECT_FLOAT_EQ(s.at(3), 1.0f);
  EXPECT_FLOAT_EQ(s.at(9), 1.0f);
}

TEST(LrSchedule, CosineReachesMinAtLastStep) {
  LrSchedule s{
      .kind = LrSchedule::Kind::kCosine, .lr = 1.0f, .warmup = 2, .min_lr = 0.1f, .total = 12};
  EXPECT_FLOAT_EQ(s.at(0), 0.5f);
  EXPECT_FLOAT_EQ(s.at(2), 1.0f);
  EXPECT_NEAR(s.at(7), 0.1 + 0.45 * (1 + std::cos(M_PI * 5.0 / 9.0)), 1e-6);
  EXPECT_FLOAT_EQ(s.at(11), 0.1f);
  for (int i = 3; i < 12; ++i) EXPECT_LT(s.at(i), s.at(i - 1));
  EXPECT_THROW(LrSchedule::parse_kind("linear"), InputError);
}

TEST(GradClip, NormAndClipMatchTorch) {
  ParameterSet ps;
  ps.add("a", {2, 2});
  ps.add("b", {3});
  ps.finalize();
  float g[] = {1, 2, 3, 4, 0, -5, 6};
  std::copy(g, g + 7, ps.flat_grads().data<float>());
  const double norm = global_grad_norm(ps, cpu_backend());
  EXPECT_NEAR(norm, std::sqrt(91.0), 1e-9);
  EXPECT_EQ(clip_grad_norm(ps, cpu_backend(), norm, 100.0f), 1.0f);  // unchanged
  EXPECT_EQ(ps.flat_grads().data<float>()[3], 4.0f);
  const float coef = clip_grad_norm(ps, cpu_backend(), norm, 1.0f);
  EXPECT_NEAR(coef, 1.0 / (std::sqrt(91.0) + 1e-6), 1e-7);
  EXPECT_NEAR(global_grad_norm(ps, cpu_backend()), 1.0, 1e-6);
  EXPECT_FLOAT_EQ(ps.get("b").grad.data<float>()[2], 6.0f * coef);
}

}  // namespace
}  // namespace peng
