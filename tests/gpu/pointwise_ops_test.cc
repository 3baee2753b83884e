// CudaBackend's pointwise ops (gelu, swiglu, rope, add, scale, cast) against the CPU backend (label
// gpu; skips without a GPU): odd sizes and the sizes of real models (more elements than one
// grid of the kernels covers, so the grid-stride loop runs), poisoned outputs, the aliasing
// the contract allows, and the argument checks. Elementwise f32: within kPointwise (the two
// sides' exp differ by an ulp or two; FMA contraction on the GPU) or exact (add, scale).
#include <cmath>
#include <cstring>
#include <string>

#include "tests/gpu/gpu_op_check.h"

namespace peng {
namespace {

using namespace gpu_test;

constexpr double kPointwise = 1e-6;

// Error message of `f`, "" when it does not throw.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const Shape kShapes[] = {{1}, {3, 7}, {1000003}, {4096, 3072}};  // the last: GPT-2 MLP, B*T 4096

TEST(CudaPointwiseOps, GeluForwardBackward) {
  PENG_REQUIRE_GPU();
  uint64_t seed = 1;
  for (const Shape& shape : kShapes) {
    Tensor x = random(shape, seed++, -6, 6), dy = random(shape, seed++);
    if (x.numel() > 4) {  // the tails: gelu = 0 or x, gelu' = 0 or 1
      x.data<float>()[0] = -30.0f;
      x.data<float>()[1] = 30.0f;
      x.data<float>()[2] = -9.95f;
    }
    Tensor y = on_gpu(poisoned(shape));
    gpu().gelu_forward(on_gpu(x), y);
    Tensor y_ref = Tensor::empty(shape);
    cpu_backend().gelu_forward(x, y_ref);
    EXPECT_LE(relative_error(on_cpu(y), y_ref), kPointwise) << shape_str(shape);

    Tensor dx = on_gpu(poisoned(shape)), dx_ref = Tensor::empty(shape);
    gpu().gelu_backward(on_gpu(dy), on_gpu(x), dx);
    cpu_backend().gelu_backward(dy, x, dx_ref);
    EXPECT_LE(relative_error(on_cpu(dx), dx_ref), kPointwise) << shape_str(shape);
    // dx may alias dy: the same result in place.
    Tensor d = on_gpu(dy);
    gpu().gelu_backward(d, on_gpu(x), d);
    EXPECT_TRUE(same_bits(on_cpu(d), on_cpu(dx))) << shape_str(shape);
  }
}

struct GluCase {
  int64_t n, f;
};

TEST(CudaPointwiseOps, SwigluForwardBackward) {
  PENG_REQUIRE_GPU();
  uint64_t seed = 100;
  // Odd sizes; Llama-shaped (B*T 2048, F 5632): more elements than one grid covers.
  for (const GluCase& c : {GluCase{1, 1}, GluCase{3, 7}, GluCase{37, 1001}, GluCase{2048, 5632}}) {
    Tensor gu = random({c.n, 2 * c.f}, seed++, -8, 8), dout = random({c.n, c.f}, seed++);
    if (c.f > 3) {  // the sigmoid's tails in the first row's gate
      gu.data<float>()[0] = -100.0f;
      gu.data<float>()[1] = -87.5f;
      gu.data<float>()[2] = 100.0f;
    }
    Tensor out = on_gpu(poisoned({c.n, c.f})), out_ref = Tensor::empty({c.n, c.f});
    gpu().swiglu_forward(on_gpu(gu), out);
    cpu_backend().swiglu_forward(gu, out_ref);
    EXPECT_LE(relative_error(on_cpu(out), out_ref), kPointwise) << c.n << "x" << c.f;

    Tensor dgu = on_gpu(poisoned({c.n, 2 * c.f})), dgu_ref = Tensor::empty({c.n, 2 * c.f});
    gpu().swiglu_backward(on_gpu(dout), on_gpu(gu), dgu);
    cpu_backend().swiglu_backward(dout, gu, dgu_ref);
    EXPECT_LE(relative_error(on_cpu(dgu), dgu_ref), kPointwise) << c.n << "x" << c.f;
  }
}

TEST(CudaPointwiseOps, RopeForwardBackward) {
  PENG_REQUIRE_GPU();
  uint64_t seed = 200;
  const RopeCase cases[] = {
      {1, 1, 1, 3, 0, 4},           // nothing rotated
      {3, 5, 6, 8, 6, 14},          // GQA qkv (H 4, K 2), odd hd/2, table longer than T
      {2, 2048, 4096, 48, 40, 64},  // Llama-shaped qkv: H 32, K 8, hd 64, T above the grid
  };
  for (const RopeCase& c : cases) {
    const Shape shape = {c.b, c.t, int64_t(c.heads) * c.hd};
    Tensor cos, sin;
    rope_tables(c.tmax, c.hd, cos, sin);
    const Tensor cos_gpu = on_gpu(cos), sin_gpu = on_gpu(sin);
    for (bool forward : {true, false}) {
      Tensor x = random(shape, seed++), want = x.clone(), got = on_gpu(x);
      if (forward) {
        gpu().rope_forward(got, c.heads, c.n_rot, cos_gpu, sin_gpu);
        cpu_backend().rope_forward(want, c.heads, c.n_rot, cos, sin);
      } else {
        gpu().rope_backward(got, c.heads, c.n_rot, cos_gpu, sin_gpu);
        cpu_backend().rope_backward(want, c.heads, c.n_rot, cos, sin);
      }
      Tensor g = on_cpu(got);
      EXPECT_LE(relative_error(g, want), kPointwise)
          << shape_str(shape) << " n_rot " << c.n_rot << (forward ? " forward" : " backward");
      // Heads from n_rot on are untouched.
      const int64_t width = shape[2];
      int64_t changed = 0;
      for (int64_t row = 0; row < c.b * c.t; ++row) {
        for (int64_t j = int64_t(c.n_rot) * c.hd; j < width; ++j) {
          changed += g.data<float>()[row * width + j] != x.data<float>()[row * width + j];
        }
      }
      EXPECT_EQ(changed, 0) << shape_str(shape);
    }
  }
}

TEST(CudaPointwiseOps, AddAndScaleAreExact) {
  PENG_REQUIRE_GPU();
  uint64_t seed = 300;
  for (const Shape& shape : {Shape{1}, Shape{3, 7}, Shape{4096, 768}, Shape{1000003}}) {
    Tensor a = random(shape, seed++, -3, 3), b = random(shape, seed++, -3, 3);
    Tensor want = Tensor::empty(shape);
    cpu_backend().add(a, b, want);
    Tensor out = on_gpu(poisoned(shape));
    gpu().add(on_gpu(a), on_gpu(b), out);
    EXPECT_TRUE(same_bits(on_cpu(out), want)) << shape_str(shape);
    // out may alias a or b.
    Tensor a2 = on_gpu(a), b2 = on_gpu(b);
    gpu().add(a2, on_gpu(b), a2);
    gpu().add(on_gpu(a), b2, b2);
    EXPECT_TRUE(same_bits(on_cpu(a2), want)) << shape_str(shape);
    EXPECT_TRUE(same_bits(on_cpu(b2), want)) << shape_str(shape);

    Tensor x = on_gpu(a), x_ref = a.clone();
    gpu().scale(x, -0.37f);
    cpu_backend().scale(x_ref, -0.37f);
    EXPECT_TRUE(same_bits(on_cpu(x), x_ref)) << shape_str(shape);
  }
}

// cast gives the CPU backend's bits both ways (f32 -> bf16 rounds as core/dtype.h does).
TEST(CudaPointwiseOps, CastMatchesTheCpuBitForBit) {
  PENG_REQUIRE_GPU();
  uint64_t seed = 400;
  for (const Shape& shape : kShapes) {
    const Tensor x = random(shape, seed++, -300, 300);
    Tensor want = Tensor::empty(shape, DType::kBF16);
    cpu_backend().cast(x, want);
    Tensor narrow = Tensor::empty(shape, DType::kBF16, gpu().device());
    gpu().cast(on_gpu(x), narrow);
    EXPECT_TRUE(same_bits(on_cpu(narrow), want)) << shape_str(shape);
    Tensor wide = on_gpu(poisoned(shape)), wide_want = Tensor::empty(shape);
    gpu().cast(narrow, wide);
    cpu_backend().cast(want, wide_want);
    EXPECT_TRUE(same_bits(on_cpu(wide), wide_want)) << shape_str(shape);
  }
}

TEST(CudaPointwiseOps, BadArgumentsNameTheOp) {
  PENG_REQUIRE_GPU();
  Tensor x = on_gpu(Tensor::zeros({2, 6})), y = on_gpu(Tensor::zeros({2, 5}));
  EXPECT_NE(error_of([&] { gpu().gelu_forward(x, y); }).find("gelu_forward"), std::string::npos);
  Tensor odd = on_gpu(Tensor::zeros({2, 5})), half = on_gpu(Tensor::zeros({2, 2}));
  EXPECT_NE(error_of([&] { gpu().swiglu_forward(odd, half); }).find("swiglu_forward"),
            std::string::npos);
  Tensor qkv = on_gpu(Tensor::zeros({1, 2, 12})), table = on_gpu(Tensor::zeros({1, 2}));
  // The table has one position for T = 2.
  EXPECT_NE(error_of([&] { gpu().rope_forward(qkv, 3, 2, table, table); }).find("rope_forward"),
            std::string::npos);
  Tensor cpu_x = Tensor::zeros({2, 6});
  EXPECT_NE(error_of([&] { gpu().scale(cpu_x, 2.0f); }).find("scale"), std::string::npos);
  EXPECT_NE(error_of([&] { gpu().add(x, cpu_x, x); }).find("add"), std::string::npos);
}

}  // namespace
}  // namespace peng
