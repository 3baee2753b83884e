// kernels/gelu.cuh, swiglu.cuh, rope.cuh and elementwise.cuh under the CUDA emulation against
// CpuBackend's gelu, swiglu, rope, add and scale. Elementwise: f32 results agree within
// kPointwise (the two sides' exp differ by an ulp or two) or exactly (add, scale). Every op
// runs twice, with the default grid and with a grid capped at 3 blocks (the kernels' loops take
// several elements or rows per thread); both must give the same result.
#include "tests/cuda_emu/emu.h"  // first: the kernels compile against it

#include <cmath>
#include <cstring>
#include <functional>
#include <iterator>

#include "peng/core/cuda/kernels/elementwise.cuh"
#include "peng/core/cuda/kernels/gelu.cuh"
#include "peng/core/cuda/kernels/rope.cuh"
#include "peng/core/cuda/kernels/swiglu.cuh"
#include "tests/kernels/bf16_check.h"

namespace peng {
namespace {

using namespace kernel_test;
namespace k = cuda::kernels;

constexpr double kPointwise = 1e-6;
constexpr int kSmallGrid = 3;

// Runs `op(cap)` into a fresh poisoned output with the driver's default grid cap and with a
// cap of kSmallGrid blocks (the kernel's loops take several elements or rows per thread);
// expects both results bit-identical and returns the first.
Tensor run_both_grids(const Shape& shape, int default_cap,
                      const std::function<void(Tensor&, int)>& op) {
  Tensor out = poisoned(shape), out_small = poisoned(shape);
  op(out, default_cap);
  op(out_small, kSmallGrid);
  EXPECT_TRUE(same_bits(out, out_small)) << shape_str(shape);
  return out;
}

// Values in [-6, 6) with the tails appended: sigmoid(2u) is 0 or 1 in f32 beyond |x| ~ 9.9
// (|u| > 43); gelu' crosses 0 near -0.7518.
Tensor gelu_input(int64_t n, uint64_t seed) {
  const float tails[] = {0.0f,  -0.0f,  -9.8f, 9.8f,     -9.95f, 9.95f,  -10.0f,
                         10.0f, -30.0f, 30.0f, -0.7518f, 1e-30f, -1e-30f};
  Tensor x = random({n + int64_t(std::size(tails))}, seed, -6, 6);
  for (size_t i = 0; i < std::size(tails); ++i) x.data<float>()[n + int64_t(i)] = tails[i];
  return x;
}

const int64_t kSizes[] = {1, 31, 257, 4099};

TEST(GeluKernel, ForwardMatchesCpu) {
  uint64_t seed = 1;
  for (int64_t n0 : kSizes) {
    Tensor x = gelu_input(n0, seed++);
    const int64_t n = x.numel();
    Tensor y = run_both_grids({n}, k::kPointwiseMaxBlocks, [&](Tensor& out, int blocks) {
      emu::Launch launch;
      k::gelu_forward(launch, x.data<const float>(), n, out.data<float>(), blocks);
    });
    Tensor y_ref = Tensor::empty({n});
    cpu_backend().gelu_forward(x, y_ref);
    EXPECT_LE(relative_error(y, y_ref), kPointwise) << n;
  }
}

TEST(GeluKernel, BackwardMatchesCpuAndMayAliasDy) {
  uint64_t seed = 10;
  for (int64_t n0 : kSizes) {
    Tensor x = gelu_input(n0, seed++);
    const int64_t n = x.numel();
    Tensor dy = random({n}, seed++, -2, 2);
    Tensor dx = run_both_grids({n}, k::kPointwiseMaxBlocks, [&](Tensor& out, int blocks) {
      emu::Launch launch;
      k::gelu_backward(launch, dy.data<const float>(), x.data<const float>(), n, out.data<float>(),
                       blocks);
    });
    Tensor dx_ref = Tensor::empty({n});
    cpu_backend().gelu_backward(dy, x, dx_ref);
    EXPECT_LE(relative_error(dx, dx_ref), kPointwise) << n;
    // dx = dy, in place.
    Tensor d = dy.clone();
    emu::Launch launch;
    k::gelu_backward(launch, d.data<const float>(), x.data<const float>(), n, d.data<float>());
    EXPECT_TRUE(same_bits(d, dx)) << n;
  }
}

// Far tails, where x^3 overflows (|x| > 7e12) and exp(-2u) is 0 or inf: gelu is 0 or x and
// gelu' 0 or 1, as on the CPU (kept out of the relative errors above: 1e20 would swamp them).
TEST(GeluKernel, FarTailsAreExact) {
  Tensor x = Tensor::from_vector<float>({-1e20f, 1e20f, -3e38f, 3e38f, -50.0f, 50.0f}, {6});
  Tensor dy = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {6});
  Tensor y = poisoned({6}), dx = poisoned({6});
  emu::Launch launch;
  k::gelu_forward(launch, x.data<const float>(), 6, y.data<float>());
  k::gelu_backward(launch, dy.data<const float>(), x.data<const float>(), 6, dx.data<float>());
  Tensor y_ref = Tensor::empty({6}), dx_ref = Tensor::empty({6});
  cpu_backend().gelu_forward(x, y_ref);
  cpu_backend().gelu_backward(dy, x, dx_ref);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(y.data<float>()[i], y_ref.data<float>()[i]) << x.data<float>()[i];
    EXPECT_EQ(dx.data<float>()[i], dx_ref.data<float>()[i]) << x.data<float>()[i];
  }
  EXPECT_EQ(y.data<float>()[1], 1e20f);
  EXPECT_EQ(y.data<float>()[0], 0.0f);
  EXPECT_EQ(dx.data<float>()[1], 2.0f);
  EXPECT_EQ(dx.data<float>()[0], 0.0f);
}

TEST(GeluKernel, Bf16WithinBf16Rounding) {
  const int64_t n = 515;
  Tensor x = random({n}, 3, -5, 5), dy = random({n}, 4);
  std::vector<__nv_bfloat16> xb = to_bf16(x), dyb = to_bf16(dy), yb(static_cast<size_t>(n)),
                             dxb(static_cast<size_t>(n));
  emu::Launch launch;
  k::gelu_forward(launch, xb.data(), n, yb.data());
  k::gelu_backward(launch, dyb.data(), xb.data(), n, dxb.data());
  Tensor y_ref = Tensor::empty({n}), dx_ref = Tensor::empty({n});
  cpu_backend().gelu_forward(x, y_ref);
  cpu_backend().gelu_backward(dy, x, dx_ref);
  EXPECT_LE(relative_error(from_bf16(yb, {n}), y_ref), 1e-2);
  EXPECT_LE(relative_error(from_bf16(dxb, {n}), dx_ref), 1e-2);
}

// gate_up with the sigmoid's tails in some gate columns: g < -87 (sigmoid taken as 0, exp(-g)
// overflows below -88.7) and g > 87.
Tensor swiglu_input(int64_t n, int64_t f, uint64_t seed) {
  Tensor gu = random({n, 2 * f}, seed, -8, 8);
  const float tails[] = {-87.5f, -100.0f, -1e30f, 87.5f, 100.0f, 0.0f};
  for (size_t i = 0; i < std::size(tails); ++i) {
    const int64_t row = int64_t(i) % n, col = int64_t(i * 7) % f;
    gu.data<float>()[row * 2 * f + col] = tails[i];
  }
  return gu;
}

struct GluCase {
  int64_t n, f;
};
const GluCase kGluCases[] = {{1, 1}, {3, 7}, {5, 300}, {17, 61}};  // F 300: two blocks across

TEST(SwigluKernel, ForwardMatchesCpu) {
  uint64_t seed = 20;
  for (const GluCase& c : kGluCases) {
    Tensor gu = swiglu_input(c.n, c.f, seed++);
    Tensor out = run_both_grids({c.n, c.f}, k::kSwigluRowBlocks, [&](Tensor& o, int blocks) {
      emu::Launch launch;
      k::swiglu_forward(launch, gu.data<const float>(), c.n, c.f, o.data<float>(), blocks);
    });
    Tensor out_ref = Tensor::empty({c.n, c.f});
    cpu_backend().swiglu_forward(gu, out_ref);
    EXPECT_LE(relative_error(out, out_ref), kPointwise) << c.n << "x" << c.f;
  }
}

TEST(SwigluKernel, BackwardMatchesCpu) {
  uint64_t seed = 40;
  for (const GluCase& c : kGluCases) {
    Tensor gu = swiglu_input(c.n, c.f, seed++), dout = random({c.n, c.f}, seed++);
    Tensor dgu = run_both_grids({c.n, 2 * c.f}, k::kSwigluRowBlocks, [&](Tensor& o, int blocks) {
      emu::Launch launch;
      k::swiglu_backward(launch, dout.data<const float>(), gu.data<const float>(), c.n, c.f,
                         o.data<float>(), blocks);
    });
    Tensor dgu_ref = Tensor::empty({c.n, 2 * c.f});
    cpu_backend().swiglu_backward(dout, gu, dgu_ref);
    EXPECT_LE(relative_error(dgu, dgu_ref), kPointwise) << c.n << "x" << c.f;
  }
}

TEST(SwigluKernel, Bf16WithinBf16Rounding) {
  const int64_t n = 9, f = 45;
  Tensor gu = random({n, 2 * f}, 5, -4, 4), dout = random({n, f}, 6);
  std::vector<__nv_bfloat16> gub = to_bf16(gu), doutb = to_bf16(dout), outb(size_t(n * f)),
                             dgub(size_t(n * 2 * f));
  emu::Launch launch;
  k::swiglu_forward(launch, gub.data(), n, f, outb.data());
  k::swiglu_backward(launch, doutb.data(), gub.data(), n, f, dgub.data());
  Tensor out_ref = Tensor::empty({n, f}), dgu_ref = Tensor::empty({n, 2 * f});
  cpu_backend().swiglu_forward(gu, out_ref);
  cpu_backend().swiglu_backward(dout, gu, dgu_ref);
  EXPECT_LE(relative_error(from_bf16(outb, {n, f}), out_ref), 1e-2);
  EXPECT_LE(relative_error(from_bf16(dgub, {n, 2 * f}), dgu_ref), 1e-2);
}

// No rotated head; all heads rotated; a fused GQA qkv (H = 4, K = 2: 8 heads, 6 rotated) with
// a table longer than T; hd = 2 (one pair); odd hd/2 with B and T above the small grid's cap;
// a row of 300 pairs (two blocks across).
const RopeCase kRopeCases[] = {{1, 1, 1, 3, 0, 4}, {2, 3, 5, 2, 2, 8},  {2, 7, 9, 8, 6, 16},
                               {3, 4, 4, 3, 2, 2}, {5, 6, 8, 4, 3, 14}, {1, 2, 2, 6, 5, 120}};

TEST(RopeKernel, ForwardAndBackwardMatchCpu) {
  uint64_t seed = 60;
  for (const RopeCase& c : kRopeCases) {
    const Shape shape = {c.b, c.t, int64_t(c.heads) * c.hd};
    Tensor cos, sin;
    rope_tables(c.tmax, c.hd, cos, sin);
    for (bool forward : {true, false}) {
      Tensor x = random(shape, seed++);
      Tensor got = run_both_grids(shape, k::kRopeRowBlocks, [&](Tensor& o, int blocks) {
        std::memcpy(o.raw_data(), x.raw_data(), size_t(x.numel()) * sizeof(float));
        emu::Launch launch;
        if (forward) {
          k::rope_forward(launch, o.data<float>(), c.b, c.t, c.heads, c.n_rot, c.hd,
                          cos.data<const float>(), sin.data<const float>(), blocks);
        } else {
          k::rope_backward(launch, o.data<float>(), c.b, c.t, c.heads, c.n_rot, c.hd,
                           cos.data<const float>(), sin.data<const float>(), blocks);
        }
      });
      Tensor want = x.clone();
      if (forward)
        cpu_backend().rope_forward(want, c.heads, c.n_rot, cos, sin);
      else
        cpu_backend().rope_backward(want, c.heads, c.n_rot, cos, sin);
      EXPECT_LE(relative_error(got, want), kPointwise)
          << shape_str(shape) << " n_rot " << c.n_rot << (forward ? " forward" : " backward");
      // Heads from n_rot on are untouched, bit for bit.
      const int64_t hd = c.hd, width = int64_t(c.heads) * hd;
      for (int64_t row = 0; row < c.b * c.t; ++row) {
        for (int64_t j = int64_t(c.n_rot) * hd; j < width; ++j) {
          ASSERT_EQ(got.data<float>()[row * width + j], x.data<float>()[row * width + j]);
        }
      }
    }
  }
}

TEST(RopeKernel, BackwardInvertsForward) {
  const RopeCase c{2, 7, 9, 8, 6, 16};
  const Shape shape = {c.b, c.t, int64_t(c.heads) * c.hd};
  Tensor cos, sin;
  rope_tables(c.tmax, c.hd, cos, sin);
  Tensor x = random(shape, 5), y = x.clone();
  emu::Launch launch;
  k::rope_forward(launch, y.data<float>(), c.b, c.t, c.heads, c.n_rot, c.hd,
                  cos.data<const float>(), sin.data<const float>());
  EXPECT_GT(relative_error(y, x), 0.1);  // it did rotate
  k::rope_backward(launch, y.data<float>(), c.b, c.t, c.heads, c.n_rot, c.hd,
                   cos.data<const float>(), sin.data<const float>());
  EXPECT_LE(relative_error(y, x), kF32);
}

TEST(RopeKernel, Bf16WithinBf16Rounding) {
  const RopeCase c{2, 7, 9, 8, 6, 16};
  const Shape shape = {c.b, c.t, int64_t(c.heads) * c.hd};
  Tensor cos, sin;
  rope_tables(c.tmax, c.hd, cos, sin);
  Tensor x = random(shape, 8);
  std::vector<__nv_bfloat16> xb = to_bf16(x);
  emu::Launch launch;
  k::rope_forward(launch, xb.data(), c.b, c.t, c.heads, c.n_rot, c.hd, cos.data<const float>(),
                  sin.data<const float>());
  Tensor want = x.clone();
  cpu_backend().rope_forward(want, c.heads, c.n_rot, cos, sin);
  EXPECT_LE(relative_error(from_bf16(xb, shape), want), 1e-2);
}

TEST(ElementwiseKernel, AddIsExactAndMayAlias) {
  uint64_t seed = 80;
  for (int64_t n : kSizes) {
    Tensor a = random({n}, seed++, -3, 3), b = random({n}, seed++, -3, 3);
    Tensor out = run_both_grids({n}, k::kPointwiseMaxBlocks, [&](Tensor& o, int blocks) {
      emu::Launch launch;
      k::add(launch, a.data<const float>(), b.data<const float>(), n, o.data<float>(), blocks);
    });
    Tensor want = Tensor::empty({n});
    cpu_backend().add(a, b, want);
    EXPECT_TRUE(same_bits(out, want)) << n;
    // out = a and out = b, in place.
    Tensor a2 = a.clone(), b2 = b.clone();
    emu::Launch launch;
    k::add(launch, a2.data<const float>(), b.data<const float>(), n, a2.data<float>());
    k::add(launch, a.data<const float>(), b2.data<const float>(), n, b2.data<float>());
    EXPECT_TRUE(same_bits(a2, want)) << n;
    EXPECT_TRUE(same_bits(b2, want)) << n;
  }
}

TEST(ElementwiseKernel, ScaleIsExact) {
  uint64_t seed = 90;
  for (int64_t n : kSizes) {
    Tensor x = random({n}, seed++, -3, 3);
    Tensor got = run_both_grids({n}, k::kPointwiseMaxBlocks, [&](Tensor& o, int blocks) {
      std::memcpy(o.raw_data(), x.raw_data(), size_t(n) * sizeof(float));
      emu::Launch launch;
      k::scale(launch, o.data<float>(), n, -0.37f, blocks);
    });
    Tensor want = x.clone();
    cpu_backend().scale(want, -0.37f);
    EXPECT_TRUE(same_bits(got, want)) << n;
  }
}

TEST(ElementwiseKernel, Bf16AddAndScale) {
  const int64_t n = 300;
  Tensor a = random({n}, 1), b = random({n}, 2);
  std::vector<__nv_bfloat16> ab = to_bf16(a), bb = to_bf16(b), outb(static_cast<size_t>(n));
  emu::Launch launch;
  k::add(launch, ab.data(), bb.data(), n, outb.data());
  k::scale(launch, outb.data(), n, 0.5f);
  Tensor want = Tensor::empty({n});
  cpu_backend().add(a, b, want);
  cpu_backend().scale(want, 0.5f);
  EXPECT_LE(relative_error(from_bf16(outb, {n}), want), 1e-2);
}

TEST(ElementwiseKernel, EmptyArraysLaunchNothing) {
  emu::Launch launch;
  float dummy = 1.0f;
  k::add(launch, &dummy, &dummy, 0, &dummy);
  k::scale(launch, &dummy, 0, 2.0f);
  k::gelu_forward(launch, &dummy, 0, &dummy);
  EXPECT_EQ(dummy, 1.0f);
}

}  // namespace
}  // namespace peng
