// kernels/adamw.cuh under the CUDA emulation against CpuBackend::adamw_update.
#include "tests/cuda_emu/emu.h"  // first: the kernels compile against it

#include "peng/core/cuda/kernels/adamw.cuh"
#include "tests/kernels/kernel_check.h"

namespace peng {
namespace {

using namespace kernel_test;
namespace k = cuda::kernels;

// Sizes: 1; a partial block; and more than kAdamWBlocks * 256 elements, so threads take
// several elements of the grid-stride loop.
const int64_t kSizes[] = {1, 1000, int64_t(k::kAdamWBlocks) * k::kAdamWThreads + 4099};

// Three steps (bias corrections change; the first with weight decay 0) from nonzero moments,
// each from the CPU's state of the step before.
TEST(AdamWKernel, MatchesCpuStepByStep) {
  uint64_t seed = 1;
  for (const int64_t n : kSizes) {
    Tensor p_ref = random({n}, seed++), m_ref = random({n}, seed++, -0.1f, 0.1f),
           v_ref = random({n}, seed++, 0.0f, 0.01f);
    for (int64_t step = 1; step <= 3; ++step) {
      Tensor g = random({n}, seed++, -0.5f, 0.5f);
      AdamWOptions opt;
      opt.lr = 3e-4f;
      opt.weight_decay = step == 1 ? 0.0f : 0.1f;
      opt.step = step;
      const AdamWScalars s = adamw_scalars(opt);
      Tensor p = p_ref.clone(), m = m_ref.clone(), v = v_ref.clone();
      const Tensor p0 = p_ref.clone(), m0 = m_ref.clone(), v0 = v_ref.clone();
      emu::Launch launch;
      k::adamw_update(launch, p.data<float>(), g.data<const float>(), m.data<float>(),
                      v.data<float>(), n, s);
      cpu_backend().adamw_update(p_ref, g, m_ref, v_ref, opt);
      auto at = [](const Tensor& t, int64_t i) { return double(t.data<float>()[i]); };
      const double p_ulps = ulps_of_operands(p, p_ref, [&](int64_t i) {
        const double upd =
            s.step_size * at(m_ref, i) / (std::sqrt(at(v_ref, i)) / s.bc2_sqrt + s.eps);
        return std::pair<double, double>{at(p0, i) * s.decay, upd};
      });
      const double m_ulps = ulps_of_operands(m, m_ref, [&](int64_t i) {
        return std::pair<double, double>{at(m0, i), s.w1 * (at(g, i) - at(m0, i))};
      });
      const double v_ulps = ulps_of_operands(v, v_ref, [&](int64_t i) {
        return std::pair<double, double>{at(v0, i) * s.b2, s.w2 * at(g, i) * at(g, i)};
      });
      EXPECT_LE(p_ulps, 1.5) << "n " << n << " step " << step;
      EXPECT_LE(m_ulps, 1.5) << "n " << n << " step " << step;
      EXPECT_LE(v_ulps, 1.5) << "n " << n << " step " << step;
      EXPECT_LE(relative_error(p, p_ref), 1e-7) << "n " << n << " step " << step;
    }
  }
}

// AdamWOptions with lr 1e-3, betas 0.9 and 0.95, eps 1e-8.
AdamWOptions options(float weight_decay, int64_t step) {
  AdamWOptions opt;
  opt.lr = 1e-3f;
  opt.beta1 = 0.9f;
  opt.beta2 = 0.95f;
  opt.eps = 1e-8f;
  opt.weight_decay = weight_decay;
  opt.step = step;
  return opt;
}

// The scalars (core/backend.h's adamw_scalars, the CPU backend's too) to the bit: a zero
// gradient and zero moments leave p scaled by the decay only, and a large step count drives
// the bias corrections to 1.
TEST(AdamWKernel, ScalarsComputedInDoubleAndRoundedOnce) {
  const AdamWScalars s = adamw_scalars(options(0.1f, 1));
  EXPECT_EQ(s.decay, float(1.0 - double(1e-3f) * double(0.1f)));
  EXPECT_EQ(s.w1, float(1.0 - double(0.9f)));
  EXPECT_EQ(s.w2, float(1.0 - double(0.95f)));
  EXPECT_EQ(s.step_size, float(double(1e-3f) / (1.0 - double(0.9f))));
  EXPECT_EQ(s.bc2_sqrt, float(std::sqrt(1.0 - double(0.95f))));
  EXPECT_EQ(s.b2, 0.95f);
  EXPECT_EQ(s.eps, 1e-8f);
  const AdamWScalars late = adamw_scalars(options(0.0f, 100000));
  EXPECT_EQ(late.step_size, 1e-3f);
  EXPECT_EQ(late.bc2_sqrt, 1.0f);
  EXPECT_EQ(late.decay, 1.0f);
}

TEST(AdamWKernel, EmptyRangeLaunchesNothing) {
  emu::Launch launch;
  k::adamw_update(launch, nullptr, nullptr, nullptr, nullptr, 0, adamw_scalars(options(0.0f, 1)));
  EXPECT_EQ(launch.launches, 1);  // queued with an empty grid: the Launch skips it
}

}  // namespace
}  // namespace peng
