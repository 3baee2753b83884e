// CudaBackend's matmul and linear ops (cuBLASLt) against the CPU backend (label gpu; skips
// without a GPU): every transpose, both weight layouts, batched products, odd sizes and the
// sizes of GPT-2 small (4096 rows of 768 -> 2304), alpha/beta and accumulation, unaligned
// pointers, bit-identical repeats and the argument checks.
#include <utility>

#include "tests/gpu/gpu_op_check.h"

namespace peng {
namespace {

using namespace gpu_test;

struct Mnk {
  int64_t m, n, k;
};

// Reductions longer than this many terms are held to kF32LongReduction (the bound).
double tolerance(int64_t reduction) { return reduction > 1024 ? kF32LongReduction : kF32; }

std::string label(const Mnk& s, bool ta, bool tb) {
  return detail::concat(s.m, "x", s.k, "x", s.n, ta ? " trans_a" : "", tb ? " trans_b" : "");
}

TEST(CudaMatmulOps, Matmul2DEveryTransposeMatchesCpu) {
  PENG_REQUIRE_GPU();
  uint64_t seed = 1;
  for (const Mnk& s : {Mnk{1, 1, 1}, Mnk{37, 129, 771}, Mnk{4096, 2304, 768}}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        const Tensor a = random(ta ? Shape{s.k, s.m} : Shape{s.m, s.k}, seed++);
        const Tensor b = random(tb ? Shape{s.n, s.k} : Shape{s.k, s.n}, seed++);
        MatmulOptions opt;
        opt.trans_a = ta;
        opt.trans_b = tb;
        Tensor out = on_gpu(poisoned({s.m, s.n}));  // beta 0: every element written, none read
        gpu().matmul(on_gpu(a), on_gpu(b), out, opt);
        Tensor ref = Tensor::empty({s.m, s.n});
        cpu_backend().matmul(a, b, ref, opt);
        EXPECT_LE(relative_error(on_cpu(out), ref), tolerance(s.k)) << label(s, ta, tb);
      }
    }
  }
}

TEST(CudaMatmulOps, MatmulAlphaBetaAccumulate) {
  PENG_REQUIRE_GPU();
  uint64_t seed = 50;
  const Mnk s{37, 129, 771};
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      const Tensor a = random(ta ? Shape{s.k, s.m} : Shape{s.m, s.k}, seed++);
      const Tensor b = random(tb ? Shape{s.n, s.k} : Shape{s.k, s.n}, seed++);
      const MatmulOptions opt{ta, tb, 0.5f, 0.75f};
      Tensor ref = random({s.m, s.n}, seed++);
      Tensor out = on_gpu(ref);
      gpu().matmul(on_gpu(a), on_gpu(b), out, opt);
      cpu_backend().matmul(a, b, ref, opt);
      EXPECT_LE(relative_error(on_cpu(out), ref), kF32) << label(s, ta, tb);
    }
  }
}

TEST(CudaMatmulOps, Matmul3DBatchedMatchesCpu) {
  PENG_REQUIRE_GPU();
  uint64_t seed = 100;
  const int64_t batch = 5;
  for (const Mnk& s : {Mnk{37, 33, 20}, Mnk{128, 128, 64}, Mnk{1, 7, 3}}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        const Tensor a = random(ta ? Shape{batch, s.k, s.m} : Shape{batch, s.m, s.k}, seed++);
        const Tensor b = random(tb ? Shape{batch, s.n, s.k} : Shape{batch, s.k, s.n}, seed++);
        for (float beta : {0.0f, 1.0f}) {
          const MatmulOptions opt{ta, tb, 1.0f, beta};
          Tensor ref = random({batch, s.m, s.n}, seed++);
          Tensor out = on_gpu(beta == 0.0f ? poisoned(ref.shape()) : ref);
          gpu().matmul(on_gpu(a), on_gpu(b), out, opt);
          cpu_backend().matmul(a, b, ref, opt);
          EXPECT_LE(relative_error(on_cpu(out), ref), kF32) << label(s, ta, tb) << " beta " << beta;
        }
      }
    }
  }
}

TEST(CudaMatmulOps, MatmulEmptyInnerDimensionScalesOut) {
  PENG_REQUIRE_GPU();
  const Tensor a = Tensor::empty({5, 0}), b = Tensor::empty({0, 7});
  for (float beta : {0.0f, 0.5f}) {
    const MatmulOptions opt{false, false, 1.0f, beta};
    Tensor ref = random({5, 7}, 7);
    Tensor out = on_gpu(beta == 0.0f ? poisoned({5, 7}) : ref);
    gpu().matmul(on_gpu(a), on_gpu(b), out, opt);
    cpu_backend().matmul(a, b, ref, opt);
    EXPECT_EQ(relative_error(on_cpu(out), ref), 0.0) << "beta " << beta;
  }
}

struct LinearCase {
  Shape x;  // (N, Cin) or (B, T, Cin)
  int64_t cout;
};

// x (..., Cin) -> w in the layout's shape.
Shape w_shape(int64_t cin, int64_t cout, WeightLayout layout) {
  return layout == WeightLayout::kInOut ? Shape{cin, cout} : Shape{cout, cin};
}

TEST(CudaMatmulOps, LinearForwardBackwardBothLayoutsMatchCpu) {
  PENG_REQUIRE_GPU();
  uint64_t seed = 200;
  const LinearCase cases[] = {
      {{1, 1}, 1}, {{37, 771}, 129}, {{4, 1024, 768}, 2304}, {{4096, 3072}, 768}};
  for (const LinearCase& c : cases) {
    const int64_t cin = c.x.back(), n = shape_numel(c.x) / cin;
    Shape ys = c.x;
    ys.back() = c.cout;
    for (WeightLayout layout : {WeightLayout::kInOut, WeightLayout::kOutIn}) {
      for (bool with_bias : {true, false}) {
        const std::string what = detail::concat(
            n, "x", cin, "->", c.cout, layout == WeightLayout::kInOut ? " kInOut" : " kOutIn",
            with_bias ? " bias" : "");
        const Tensor x = random(c.x, seed++), w = random(w_shape(cin, c.cout, layout), seed++);
        const Tensor bias = with_bias ? random({c.cout}, seed++) : Tensor();
        Tensor y = on_gpu(poisoned(ys));
        gpu().linear_forward(on_gpu(x), on_gpu(w), with_bias ? on_gpu(bias) : Tensor(), y, layout);
        Tensor y_ref = Tensor::empty(ys);
        cpu_backend().linear_forward(x, w, bias, y_ref, layout);
        EXPECT_LE(relative_error(on_cpu(y), y_ref), tolerance(cin)) << what;

        // dx overwritten (poisoned), dw and dbias accumulated into (nonzero start).
        const Tensor dy = random(ys, seed++);
        Tensor dx_ref = Tensor::empty(c.x), dw_ref = random(w.shape(), seed++);
        Tensor db_ref = with_bias ? random({c.cout}, seed++) : Tensor();
        Tensor dx = on_gpu(poisoned(c.x)), dw = on_gpu(dw_ref);
        Tensor db = with_bias ? on_gpu(db_ref) : Tensor();
        gpu().linear_backward(on_gpu(dy), on_gpu(x), on_gpu(w), dx, dw, db, layout);
        cpu_backend().linear_backward(dy, x, w, dx_ref, dw_ref, db_ref, layout);
        EXPECT_LE(relative_error(on_cpu(dx), dx_ref), tolerance(c.cout)) << what;
        EXPECT_LE(relative_error(on_cpu(dw), dw_ref), tolerance(n)) << what;
        if (with_bias) {
          EXPECT_LE(relative_error(on_cpu(db), db_ref), tolerance(n)) << what;
        }
      }
    }
  }
}

TEST(CudaMatmulOps, LinearBackwardWithoutDxStillAccumulatesDw) {
  PENG_REQUIRE_GPU();
  for (WeightLayout layout : {WeightLayout::kInOut, WeightLayout::kOutIn}) {
    const Tensor x = random({45, 33}, 1), w = random(w_shape(33, 17, layout), 2),
                 dy = random({45, 17}, 3);
    Tensor dw_ref = random(w.shape(), 4), db_ref = random({17}, 5), no_dx;
    Tensor dw = on_gpu(dw_ref), db = on_gpu(db_ref);
    gpu().linear_backward(on_gpu(dy), on_gpu(x), on_gpu(w), no_dx, dw, db, layout);
    cpu_backend().linear_backward(dy, x, w, no_dx, dw_ref, db_ref, layout);
    EXPECT_LE(relative_error(on_cpu(dw), dw_ref), kF32);
    EXPECT_LE(relative_error(on_cpu(db), db_ref), kF32);
  }
}

// Views one float into their storage: 4-byte aligned pointers, below what cuBLASLt's
// heuristic assumes by default; the plan cache keys on the alignment.
TEST(CudaMatmulOps, UnalignedPointersMatchCpu) {
  PENG_REQUIRE_GPU();
  const int64_t n = 37, cin = 65, cout = 31;
  const Tensor x = random({n, cin}, 1), w = random({cin, cout}, 2), bias = random({cout}, 3);
  auto shifted = [](const Tensor& t) {
    Tensor big = Tensor::empty({t.numel() + 1}, DType::kF32, Device::cuda(0));
    Tensor v = big.flat_view(1, t.shape());
    v.copy_from(on_gpu(t));
    return v;
  };
  Tensor y_big = Tensor::empty({n * cout + 1}, DType::kF32, Device::cuda(0));
  Tensor y = y_big.flat_view(1, {n, cout});
  gpu().linear_forward(shifted(x), shifted(w), shifted(bias), y);
  Tensor y_ref = Tensor::empty({n, cout});
  cpu_backend().linear_forward(x, w, bias, y_ref);
  EXPECT_LE(relative_error(on_cpu(y), y_ref), kF32);
  // The same shape with aligned pointers afterwards (another plan) is still right.
  Tensor y2 = on_gpu(poisoned({n, cout}));
  gpu().linear_forward(on_gpu(x), on_gpu(w), on_gpu(bias), y2);
  EXPECT_LE(relative_error(on_cpu(y2), y_ref), kF32);
}

TEST(CudaMatmulOps, LinearIsBitIdenticalRunToRun) {
  PENG_REQUIRE_GPU();
  const Tensor x = on_gpu(random({4096, 768}, 1)), w = on_gpu(random({768, 2304}, 2));
  const Tensor bias = on_gpu(random({2304}, 3)), dy = on_gpu(random({4096, 2304}, 4));
  std::vector<float> first[4];
  for (int run = 0; run < 2; ++run) {
    Tensor y = Tensor::empty({4096, 2304}, DType::kF32, Device::cuda(0));
    Tensor dx = Tensor::empty({4096, 768}, DType::kF32, Device::cuda(0));
    Tensor dw = Tensor::zeros({768, 2304}, DType::kF32, Device::cuda(0));
    Tensor db = Tensor::zeros({2304}, DType::kF32, Device::cuda(0));
    gpu().linear_forward(x, w, bias, y);
    gpu().linear_backward(dy, x, w, dx, dw, db);
    const Tensor outs[4] = {on_cpu(y), on_cpu(dx), on_cpu(dw), on_cpu(db)};
    for (int i = 0; i < 4; ++i) {
      std::vector<float> v(outs[i].data<float>(), outs[i].data<float>() + outs[i].numel());
      if (run == 0) {
        first[i] = std::move(v);
      } else {
        EXPECT_TRUE(v == first[i]) << "output " << i;
      }
    }
  }
}

TEST(CudaMatmulOps, BadArgumentsAreClearErrors) {
  PENG_REQUIRE_GPU();
  const Tensor a = on_gpu(random({4, 5}, 1)), b = on_gpu(random({6, 3}, 2));
  Tensor out = Tensor::empty({4, 3}, DType::kF32, Device::cuda(0));
  EXPECT_THROW(gpu().matmul(a, b, out), Error);  // inner dimensions differ
  Tensor cpu_out = Tensor::empty({4, 3});
  EXPECT_THROW(gpu().matmul(a, on_gpu(random({5, 3}, 3)), cpu_out), Error);  // wrong device
  Tensor aliased = a.flat_view(0, {4, 5});
  EXPECT_THROW(gpu().matmul(a, on_gpu(random({5, 5}, 4)), aliased), Error);  // out overlaps a
  const Tensor x = on_gpu(random({4, 5}, 5)), w = on_gpu(random({5, 3}, 6));
  Tensor y = Tensor::empty({4, 3}, DType::kF32, Device::cuda(0));
  EXPECT_THROW(gpu().linear_forward(x, w, Tensor(), y, WeightLayout::kOutIn), Error);
  EXPECT_THROW(gpu().linear_forward(x, w, on_gpu(random({4}, 7)), y), Error);  // bias size
  try {
    gpu().matmul(a, b, out);
    ADD_FAILURE() << "no error for a [4, 5] @ b [6, 3]";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("matmul: inner dimensions differ"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace peng
