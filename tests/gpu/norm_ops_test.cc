// CudaBackend's normalisation ops against the CPU backend (label gpu; skips without a GPU).
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
    gpu().layernorm_backward(on_gpu(dy), on_gpu(x), on_gpu(w), mean, rstd, dx_gpu, dw_gpu,
                             db_gpu);
    cpu_backend().layernorm_backward(dy, x, w, mean_ref, rstd_ref, dx, dw, db);
    EXPECT_LE(relative_error(on_cpu(dx_gpu), dx), tol) << n << "x" << c;
    EXPECT_LE(relative_error(on_cpu(dw_gpu), dw), kF32LongReduction) << n << "x" << c;
    EXPECT_LE(relative_error(on_cpu(db_gpu), db), kF32LongReduction) << n << "x" << c;
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
