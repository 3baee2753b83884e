// CudaBackend's normalisation ops (LayerNorm, RMSNorm, q/k norm) against the CPU backend (label
// gpu; skips without a GPU).
#include <cstring>
#include <string>

#include "tests/gpu/gpu_op_check.h"

namespace peng {
namespace {

using namespace gpu_test;

TEST(CudaNormOps, LayerNormForwardBackward) {
  PENG_REQUIRE_GPU();
  uint64_t seed = 1;
  for (auto [n, c] : {std::pair<int64_t, int64_t>{1, 1}, {37, 771}, {4096, 768}, {129, 2049}}) {
    Tensor x = random({n, c}, seed++, -2, 3), w = random({c}, seed++), b = random({c}, seed++);
    Tensor y = on_gpu(poisoned({n, c})), mean = on_gpu(poisoned({n})), rstd = on_gpu(poisoned({n}));
    gpu().layernorm_forward(on_gpu(x), on_gpu(w), on_gpu(b), 1e-5f, y, mean, rstd);
    Tensor y_ref = Tensor::empty({n, c}), mean_ref = Tensor::empty({n}),
           rstd_ref = Tensor::empty({n});
    cpu_backend().layernorm_forward(x, w, b, 1e-5f, y_ref, mean_ref, rstd_ref);
    const double tol = c > 1024 ? kF32LongReduction : kF32;
    EXPECT_LE(relative_error(on_cpu(y), y_ref), tol) << n << "x" << c;
    EXPECT_LE(relative_error(on_cpu(rstd), rstd_ref), tol) << n << "x" << c;

    Tensor dy = random({n, c}, seed++), dx = random({n, c}, seed++), dw = random({c}, seed++),
           db = random({c}, seed++);
    Tensor dx_gpu = on_gpu(dx), dw_gpu = on_gpu(dw), db_gpu = on_gpu(db);
    gpu().layernorm_backward(on_gpu(dy), on_gpu(x), on_gpu(w), mean, rstd, dx_gpu, dw_gpu, db_gpu);
    cpu_backend().layernorm_backward(dy, x, w, mean_ref, rstd_ref, dx, dw, db);
    EXPECT_LE(relative_error(on_cpu(dx_gpu), dx), tol) << n << "x" << c;
    EXPECT_LE(relative_error(on_cpu(dw_gpu), dw), kF32LongReduction) << n << "x" << c;
    EXPECT_LE(relative_error(on_cpu(db_gpu), db), kF32LongReduction) << n << "x" << c;
  }
}

TEST(CudaNormOps, RmsNormForwardBackward) {
  PENG_REQUIRE_GPU();
  uint64_t seed = 100;
  for (auto [n, c] :
       {std::pair<int64_t, int64_t>{1, 1}, {37, 771}, {4096, 768}, {129, 2049}, {2048, 4096}}) {
    Tensor x = random({n, c}, seed++, -2, 3), w = random({c}, seed++);
    Tensor y = on_gpu(poisoned({n, c})), rstd = on_gpu(poisoned({n}));
    gpu().rmsnorm_forward(on_gpu(x), on_gpu(w), 1e-6f, y, rstd);
    Tensor y_ref = Tensor::empty({n, c}), rstd_ref = Tensor::empty({n});
    cpu_backend().rmsnorm_forward(x, w, 1e-6f, y_ref, rstd_ref);
    const double tol = c > 1024 ? kF32LongReduction : kF32;
    EXPECT_LE(relative_error(on_cpu(y), y_ref), tol) << n << "x" << c;
    EXPECT_LE(relative_error(on_cpu(rstd), rstd_ref), tol) << n << "x" << c;

    // dx and dw are accumulated into: both sides start from the same nonzero values.
    Tensor dy = random({n, c}, seed++), dx = random({n, c}, seed++), dw = random({c}, seed++);
    Tensor dx_gpu = on_gpu(dx), dw_gpu = on_gpu(dw);
    gpu().rmsnorm_backward(on_gpu(dy), on_gpu(x), on_gpu(w), rstd, dx_gpu, dw_gpu);
    cpu_backend().rmsnorm_backward(dy, x, w, rstd_ref, dx, dw);
    EXPECT_LE(relative_error(on_cpu(dx_gpu), dx), tol) << n << "x" << c;
    EXPECT_LE(relative_error(on_cpu(dw_gpu), dw), kF32LongReduction) << n << "x" << c;

    // Deterministic: the same dw bit for bit from the same start.
    Tensor dx2 = on_gpu(random({n, c}, 7)), dw2 = on_gpu(random({c}, 8));
    Tensor dx3 = on_gpu(random({n, c}, 7)), dw3 = on_gpu(random({c}, 8));
    gpu().rmsnorm_backward(on_gpu(dy), on_gpu(x), on_gpu(w), rstd, dx2, dw2);
    gpu().rmsnorm_backward(on_gpu(dy), on_gpu(x), on_gpu(w), rstd, dx3, dw3);
    Tensor a = on_cpu(dw2), b = on_cpu(dw3);
    EXPECT_EQ(std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()), 0) << n << "x" << c;
  }
}

struct QkCase {
  int64_t b, t;
  int h, k, hd;
};

TEST(CudaNormOps, QkNormForwardBackward) {
  PENG_REQUIRE_GPU();
  uint64_t seed = 200;
  const QkCase cases[] = {
      {1, 1, 1, 1, 1},        // one channel
      {2, 3, 4, 2, 7},        // GQA, odd hd
      {3, 5, 3, 3, 33},       // multi-head (K = H), hd above a warp
      {4, 1024, 16, 8, 128},  // Qwen3-shaped: 16 query heads, 8 kv heads of 128
  };
  for (const QkCase& c : cases) {
    const Shape shape = {c.b, c.t, int64_t(c.h + 2 * c.k) * c.hd};
    const int64_t rows = c.b * c.t;
    const std::string what = shape_str(shape) + " H " + std::to_string(c.h);
    Tensor qkv = random(shape, seed++, -2, 3), wq = random({c.hd}, seed++),
           wk = random({c.hd}, seed++), dout = random(shape, seed++);
    Tensor out = on_gpu(poisoned(shape)), rstd = on_gpu(poisoned({rows, c.h + c.k}));
    gpu().qk_norm_forward(on_gpu(qkv), c.h, c.k, on_gpu(wq), on_gpu(wk), 1e-6f, out, rstd);
    Tensor out_ref = Tensor::empty(shape), rstd_ref = Tensor::empty({rows, c.h + c.k});
    cpu_backend().qk_norm_forward(qkv, c.h, c.k, wq, wk, 1e-6f, out_ref, rstd_ref);
    EXPECT_LE(relative_error(on_cpu(out), out_ref), kF32) << what;
    EXPECT_LE(relative_error(on_cpu(rstd), rstd_ref), kF32) << what;

    for (bool in_place : {false, true}) {
      // dwq and dwk are accumulated into; dqkv is overwritten (poisoned unless it is dout).
      Tensor dwq = random({c.hd}, seed++), dwk = random({c.hd}, seed++);
      Tensor dwq_gpu = on_gpu(dwq), dwk_gpu = on_gpu(dwk), dout_gpu = on_gpu(dout);
      Tensor dqkv_gpu = in_place ? dout_gpu : on_gpu(poisoned(shape));
      gpu().qk_norm_backward(dout_gpu, on_gpu(qkv), c.h, c.k, on_gpu(wq), on_gpu(wk), rstd,
                             dqkv_gpu, dwq_gpu, dwk_gpu);
      Tensor dqkv = Tensor::empty(shape);
      cpu_backend().qk_norm_backward(dout, qkv, c.h, c.k, wq, wk, rstd_ref, dqkv, dwq, dwk);
      const std::string how = what + (in_place ? " in place" : "");
      EXPECT_LE(relative_error(on_cpu(dqkv_gpu), dqkv), kF32) << how;
      EXPECT_LE(relative_error(on_cpu(dwq_gpu), dwq), kF32LongReduction) << how;
      EXPECT_LE(relative_error(on_cpu(dwk_gpu), dwk), kF32LongReduction) << how;
    }
  }
}

TEST(CudaNormOps, RmsNormBadArgumentsNameTheOp) {
  PENG_REQUIRE_GPU();
  Tensor x = on_gpu(Tensor::zeros({2, 3})), w = on_gpu(Tensor::zeros({4}));
  Tensor y = on_gpu(Tensor::empty({2, 3})), rstd = on_gpu(Tensor::empty({2}));
  try {
    gpu().rmsnorm_forward(x, w, 1e-6f, y, rstd);
    ADD_FAILURE() << "a w of the wrong size was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rmsnorm_forward"), std::string::npos) << e.what();
  }
  Tensor qkv = on_gpu(Tensor::zeros({1, 2, 10}));  // not divisible into H + 2K = 4 heads
  Tensor hd = on_gpu(Tensor::zeros({2})), r = on_gpu(Tensor::empty({2, 3}));
  try {
    gpu().qk_norm_forward(qkv, 2, 1, hd, hd, 1e-6f, qkv, r);
    ADD_FAILURE() << "a qkv of the wrong width was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("qk_norm_forward"), std::string::npos) << e.what();
  }
}

TEST(CudaNormOps, WrongDeviceIsAClearError) {
  PENG_REQUIRE_GPU();
  Tensor x = Tensor::zeros({2, 3}), w = Tensor::zeros({3});
  Tensor y = Tensor::empty({2, 3}), mean = Tensor::empty({2}), rstd = Tensor::empty({2});
  EXPECT_THROW(gpu().layernorm_forward(x, w, w, 1e-5f, y, mean, rstd), Error);
}

}  // namespace
}  // namespace peng
