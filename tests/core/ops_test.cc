// CpuBackend op tests: every op against a naive float64 reference written here (plain
// loops, no BLAS), every backward against central finite differences of that reference
// (loss = sum(dy * y) in double), plus the accumulate / overwrite / alias conventions of
// core/backend.h. Shapes are small and odd (T = 7, C = 12, H = 3, V = 200 padded to 256);
// a few larger shapes take the OpenMP-parallel and multi-block code paths.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/backend.h"

namespace peng {
namespace {

using Vec = std::vector<double>;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

Backend& be() { return cpu_backend(); }

// ---- helpers ----

Tensor randn(const Shape& s, std::mt19937& rng, float stddev = 1.0f) {
  Tensor t = Tensor::empty(s);
  std::normal_distribution<float> d(0.0f, stddev);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = d(rng);
  return t;
}

Tensor filled(const Shape& s, float v) {
  Tensor t = Tensor::empty(s);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = v;
  return t;
}

Vec vec(const Tensor& t) {
  const float* p = t.data<const float>();
  return Vec(p, p + t.numel());
}

Vec sub(const Vec& a, const Vec& b) {
  Vec r(a.size());
  for (size_t i = 0; i < a.size(); ++i) r[i] = a[i] - b[i];
  return r;
}

double max_abs(const Vec& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// Every element: |got - want| <= atol + rtol |want|, with atol = atol_frac * max|want| so
// that entries that cancel to ~0 are judged on the tensor's scale.
void expect_close(const Vec& got, const Vec& want, const std::string& what, double rtol = 1e-5,
                  double atol_frac = 1e-5) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const double atol = atol_frac * max_abs(want) + 1e-30;
  int bad = 0;
  double worst = 0;
  size_t worst_i = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double err = std::abs(got[i] - want[i]);
    double tol = atol + rtol * std::abs(want[i]);
    if (!(err <= tol)) {  // NaN fails
      ++bad;
      if (!(err / tol <= worst)) {
        worst = err / tol;
        worst_i = i;
      }
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size()
                    << " elements out of tolerance; worst at " << worst_i << ": got "
                    << got[worst_i] << ", want " << want[worst_i];
}

void expect_close(const Tensor& got, const Vec& want, const std::string& what, double rtol = 1e-5,
                  double atol_frac = 1e-5) {
  expect_close(vec(got), want, what, rtol, atol_frac);
}

// Central differences in double of the scalar f at x.
Vec numeric_grad(const std::function<double(const Vec&)>& f, Vec x, double h = 1e-5) {
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    double fp = f(x);
    x[i] = x0 - h;
    double fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// ---- float64 references ----

// out (M, N) = alpha op(a) op(b) + beta out0, per batch; a stored (M, K) or (K, M) if ta.
Vec matmul_ref(const Vec& a, const Vec& b, const Vec& out0, int64_t batch, int64_t m, int64_t n,
               int64_t k, bool ta, bool tb, double alpha, double beta) {
  Vec out(size_t(batch * m * n));
  for (int64_t z = 0; z < batch; ++z) {
    const double* pa = a.data() + z * m * k;
    const double* pb = b.data() + z * k * n;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t l = 0; l < k; ++l) {
          double av = ta ? pa[l * m + i] : pa[i * k + l];
          double bv = tb ? pb[j * k + l] : pb[l * n + j];
          s += av * bv;
        }
        size_t o = size_t(z * m * n + i * n + j);
        out[o] = alpha * s + (beta == 0 ? 0.0 : beta * out0[o]);
      }
    }
  }
  return out;
}

Vec linear_ref(const Vec& x, const Vec& w, const Vec* bias, int64_t n, int64_t cin, int64_t cout) {
  Vec y(size_t(n * cout));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < cout; ++j) {
      double s = bias ? (*bias)[j] : 0.0;
      for (int64_t l = 0; l < cin; ++l) s += x[i * cin + l] * w[l * cout + j];
      y[i * cout + j] = s;
    }
  }
  return y;
}

Vec layernorm_ref(const Vec& x, const Vec& w, const Vec& b, int64_t n, int64_t c, double eps,
                  Vec* mean = nullptr, Vec* rstd = nullptr) {
  Vec y(x.size());
  if (mean) mean->assign(size_t(n), 0);
  if (rstd) rstd->assign(size_t(n), 0);
  for (int64_t i = 0; i < n; ++i) {
    double m = 0, v = 0;
    for (int64_t j = 0; j < c; ++j) m += x[i * c + j];
    m /= double(c);
    for (int64_t j = 0; j < c; ++j) v += (x[i * c + j] - m) * (x[i * c + j] - m);
    v /= double(c);
    double rs = 1.0 / std::sqrt(v + eps);
    for (int64_t j = 0; j < c; ++j) y[i * c + j] = (x[i * c + j] - m) * rs * w[j] + b[j];
    if (mean) (*mean)[i] = m;
    if (rstd) (*rstd)[i] = rs;
  }
  return y;
}

// Analytic layernorm backward in double (checked against finite differences below).
void layernorm_backward_ref(const Vec& dy, const Vec& x, const Vec& w, int64_t n, int64_t c,
                            double eps, Vec& dx, Vec& dw, Vec& db) {
  Vec mean, rstd;
  layernorm_ref(x, w, Vec(size_t(c), 0.0), n, c, eps, &mean, &rstd);
  dx.assign(x.size(), 0);
  dw.assign(size_t(c), 0);
  db.assign(size_t(c), 0);
  for (int64_t i = 0; i < n; ++i) {
    double gm = 0, gxm = 0;
    for (int64_t j = 0; j < c; ++j) {
      double xh = (x[i * c + j] - mean[i]) * rstd[i];
      double g = w[j] * dy[i * c + j];
      gm += g;
      gxm += g * xh;
      dw[j] += dy[i * c + j] * xh;
      db[j] += dy[i * c + j];
    }
    gm /= double(c);
    gxm /= double(c);
    for (int64_t j = 0; j < c; ++j) {
      double xh = (x[i * c + j] - mean[i]) * rstd[i];
      dx[i * c + j] = rstd[i] * (w[j] * dy[i * c + j] - gm - xh * gxm);
    }
  }
}

double gelu_ref(double x) {
  const double k = std::sqrt(2.0 / M_PI);
  return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
}

double gelu_grad_ref(double x) {
  const double k = std::sqrt(2.0 / M_PI);
  double th = std::tanh(k * (x + 0.044715 * x * x * x));
  return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * k * (1 + 3 * 0.044715 * x * x);
}

// out (B, T, C); att (B, H, T, T) with zeros above the diagonal.
Vec attention_ref(const Vec& qkv, int64_t B, int64_t T, int64_t C, int64_t H, Vec* att = nullptr) {
  const int64_t hd = C / H;
  const double scale = 1.0 / std::sqrt(double(hd));
  Vec out(size_t(B * T * C), 0.0);
  if (att) att->assign(size_t(B * H * T * T), 0.0);
  Vec p(static_cast<size_t>(T));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < T; ++i) {
        const double* q = qkv.data() + (b * T + i) * 3 * C + h * hd;
        double mx = -1e300;
        for (int64_t j = 0; j <= i; ++j) {
          const double* k = qkv.data() + (b * T + j) * 3 * C + C + h * hd;
          double s = 0;
          for (int64_t d = 0; d < hd; ++d) s += q[d] * k[d];
          p[j] = s * scale;
          mx = std::max(mx, p[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j <= i; ++j) sum += (p[j] = std::exp(p[j] - mx));
        for (int64_t j = 0; j <= i; ++j) {
          p[j] /= sum;
          if (att) (*att)[((b * H + h) * T + i) * T + j] = p[j];
          const double* v = qkv.data() + (b * T + j) * 3 * C + 2 * C + h * hd;
          for (int64_t d = 0; d < hd; ++d) out[(b * T + i) * C + h * hd + d] += p[j] * v[d];
        }
      }
    }
  }
  return out;
}

Vec cross_entropy_ref(const Vec& logits, const std::vector<int32_t>& targets, int64_t n, int64_t vp,
                      int64_t vocab) {
  Vec loss(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double* l = logits.data() + i * vp;
    double mx = -1e300;
    for (int64_t j = 0; j < vocab; ++j) mx = std::max(mx, l[j]);
    double sum = 0;
    for (int64_t j = 0; j < vocab; ++j) sum += std::exp(l[j] - mx);
    loss[i] = std::log(sum) + mx - l[targets[i]];
  }
  return loss;
}

// ---- matmul ----

struct MatmulCase {
  int64_t batch, m, n, k;  // batch 0 = 2-D
  bool ta, tb;
  float alpha, beta;
};

void run_matmul_case(const MatmulCase& c, std::mt19937& rng) {
  const bool batched = c.batch > 0;
  const int64_t nb = batched ? c.batch : 1;
  auto with_batch = [&](int64_t r, int64_t s) {
    return batched ? Shape{c.batch, r, s} : Shape{r, s};
  };
  Tensor a = randn(c.ta ? with_batch(c.k, c.m) : with_batch(c.m, c.k), rng);
  Tensor b = randn(c.tb ? with_batch(c.n, c.k) : with_batch(c.k, c.n), rng);
  // beta == 0 must overwrite: start from NaN garbage.
  Tensor out = c.beta == 0 ? filled(with_batch(c.m, c.n), kNaN) : randn(with_batch(c.m, c.n), rng);
  Vec want = matmul_ref(vec(a), vec(b), vec(out), nb, c.m, c.n, c.k, c.ta, c.tb, c.alpha, c.beta);
  be().matmul(a, b, out, {c.ta, c.tb, c.alpha, c.beta});
  std::string what = "matmul batch " + std::to_string(c.batch) + " m " + std::to_string(c.m) +
                     " n " + std::to_string(c.n) + " k " + std::to_string(c.k) + " ta " +
                     std::to_string(c.ta) + " tb " + std::to_string(c.tb);
  expect_close(out, want, what);
}

TEST(CpuOps, BackendIdentity) {
  EXPECT_STREQ(be().name(), "cpu");
  EXPECT_TRUE(be().device().is_cpu());
  EXPECT_EQ(&be(), &cpu_backend());
}

TEST(CpuOps, Matmul2DAllTransposes) {
  std::mt19937 rng(1);
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      run_matmul_case({0, 7, 5, 13, ta, tb, 1.0f, 0.0f}, rng);
      run_matmul_case({0, 1, 9, 3, ta, tb, 1.0f, 0.0f}, rng);
      run_matmul_case({0, 33, 17, 65, ta, tb, 0.5f, 0.75f}, rng);  // alpha, beta accumulate
      // Large enough to be split over threads: by rows, then (few rows) by columns.
      run_matmul_case({0, 300, 70, 150, ta, tb, 1.0f, 0.0f}, rng);
      run_matmul_case({0, 40, 600, 100, ta, tb, 1.0f, 0.5f}, rng);
    }
  }
}

TEST(CpuOps, MatmulBatched) {
  std::mt19937 rng(2);
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      run_matmul_case({5, 7, 6, 11, ta, tb, 1.0f, 0.0f}, rng);   // spread over threads
      run_matmul_case({3, 4, 10, 3, ta, tb, -2.0f, 1.0f}, rng);  // beta = 1 accumulates
    }
  }
  run_matmul_case({2, 256, 200, 260, false, true, 1.0f, 0.0f}, rng);  // threaded sgemm path
  run_matmul_case({2, 130, 257, 129, true, false, 1.0f, 0.5f}, rng);
}

TEST(CpuOps, MatmulRejectsBadShapes) {
  Tensor a = Tensor::zeros({3, 4}), b = Tensor::zeros({5, 6}), out = Tensor::zeros({3, 6});
  EXPECT_THROW(be().matmul(a, b, out), Error);  // K mismatch
  Tensor b2 = Tensor::zeros({4, 6}), bad_out = Tensor::zeros({3, 5});
  EXPECT_THROW(be().matmul(a, b2, bad_out), Error);
  Tensor b3 = Tensor::zeros({2, 4, 6});
  EXPECT_THROW(be().matmul(a, b3, out), Error);  // 2-D with 3-D
  Tensor ai = Tensor::zeros({3, 4}, DType::kI32);
  EXPECT_THROW(be().matmul(ai, b2, out), Error);
  be().matmul(a, b2, out);  // the valid call works
  try {
    be().matmul(a, b, out);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("matmul"), std::string::npos) << e.what();
  }
}

// ---- linear ----

void run_linear_case(const Shape& xs, int64_t cout, bool with_bias, bool with_dx, bool with_dbias,
                     bool finite_diff, std::mt19937& rng) {
  const int64_t cin = xs.back();
  Tensor x = randn(xs, rng);
  const int64_t n = x.numel() / cin;
  Tensor w = randn({cin, cout}, rng, 0.3f);
  Tensor bias = with_bias ? randn({cout}, rng) : Tensor();
  Shape ys = xs;
  ys.back() = cout;
  Tensor y = filled(ys, kNaN);
  be().linear_forward(x, w, bias, y);
  Vec bv = with_bias ? vec(bias) : Vec();
  expect_close(y, linear_ref(vec(x), vec(w), with_bias ? &bv : nullptr, n, cin, cout),
               "linear_forward");

  Tensor dy = randn(ys, rng);
  Tensor dx = with_dx ? filled(xs, kNaN) : Tensor();       // overwritten
  Tensor dw0 = randn({cin, cout}, rng), dw = dw0.clone();  // accumulated into
  Tensor db0 = randn({cout}, rng), db = with_dbias ? db0.clone() : Tensor();
  be().linear_backward(dy, x, w, dx, dw, db);

  const Vec vx = vec(x), vw = vec(w), vdy = vec(dy);
  Vec gx, gw, gb;
  if (finite_diff) {
    auto loss = [&](const Vec& xx, const Vec& ww, const Vec* bb) {
      return dot(vdy, linear_ref(xx, ww, bb, n, cin, cout));
    };
    const Vec* pb = with_bias ? &bv : nullptr;
    gx = numeric_grad([&](const Vec& v) { return loss(v, vw, pb); }, vx);
    gw = numeric_grad([&](const Vec& v) { return loss(vx, v, pb); }, vw);
    Vec b0(size_t(cout), 0.0);
    gb = numeric_grad([&](const Vec& v) { return loss(vx, vw, &v); }, b0);
  } else {  // dx = dy w^T, dw = x^T dy, db = column sums of dy
    gx.assign(size_t(n * cin), 0);
    gw.assign(size_t(cin * cout), 0);
    gb.assign(size_t(cout), 0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t a = 0; a < cin; ++a)
        for (int64_t o = 0; o < cout; ++o) {
          gx[i * cin + a] += vdy[i * cout + o] * vw[a * cout + o];
          gw[a * cout + o] += vx[i * cin + a] * vdy[i * cout + o];
        }
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < cout; ++o) gb[o] += vdy[i * cout + o];
  }
  if (with_dx) expect_close(dx, gx, "linear_backward dx");
  expect_close(sub(vec(dw), vec(dw0)), gw, "linear_backward dw (accumulated)");
  if (with_dbias) expect_close(sub(vec(db), vec(db0)), gb, "linear_backward dbias (accumulated)");
}

TEST(CpuOps, LinearForwardBackwardFiniteDifferences) {
  std::mt19937 rng(3);
  run_linear_case({7, 12}, 10, true, true, true, true, rng);
  run_linear_case({2, 3, 12}, 5, true, true, true, true, rng);  // (B, T, C) input
  run_linear_case({7, 12}, 10, false, true, false, true, rng);  // no bias
  run_linear_case({5, 9}, 4, true, false, true, true, rng);     // dx skipped
}

TEST(CpuOps, LinearLargeParallelPaths) {
  std::mt19937 rng(4);
  run_linear_case({4, 37, 50}, 130, true, true, true, false, rng);  // N*Cout >= threshold
  run_linear_case({300, 64}, 1000, true, true, true, false, rng);
  run_linear_case({100, 64}, 700, true, true, true, false, rng);  // few rows: column split
}

TEST(CpuOps, LinearRejectsBadShapes) {
  Tensor x = Tensor::zeros({4, 6}), w = Tensor::zeros({6, 3}), y = Tensor::zeros({4, 3});
  Tensor bad_bias = Tensor::zeros({4});
  EXPECT_THROW(be().linear_forward(x, w, bad_bias, y), Error);
  Tensor bad_w = Tensor::zeros({5, 3});
  EXPECT_THROW(be().linear_forward(x, bad_w, Tensor(), y), Error);
  Tensor bad_y = Tensor::zeros({4, 4});
  EXPECT_THROW(be().linear_forward(x, w, Tensor(), bad_y), Error);
  Tensor dx = Tensor::zeros({4, 6}), dw = Tensor::zeros({3, 6}), db;
  EXPECT_THROW(be().linear_backward(y, x, w, dx, dw, db), Error);
}

// ---- layernorm ----

TEST(CpuOps, LayerNormForwardBackwardFiniteDifferences) {
  std::mt19937 rng(5);
  const int64_t B = 2, T = 3, C = 12, N = B * T;
  const float eps = 1e-5f;
  Tensor x = randn({B, T, C}, rng, 2.0f);
  x.data<float>()[0] += 3.0f;  // an off-centre row
  Tensor w = randn({C}, rng), b = randn({C}, rng);
  Tensor y = filled({B, T, C}, kNaN), mean = filled({B, T}, kNaN), rstd = filled({B, T}, kNaN);
  be().layernorm_forward(x, w, b, eps, y, mean, rstd);
  Vec rmean, rrstd;
  const Vec vx = vec(x), vw = vec(w), vb = vec(b);
  expect_close(y, layernorm_ref(vx, vw, vb, N, C, eps, &rmean, &rrstd), "layernorm y");
  expect_close(mean, rmean, "layernorm mean");
  expect_close(rstd, rrstd, "layernorm rstd");

  Tensor dy = randn({B, T, C}, rng);
  Tensor dx0 = randn({B, T, C}, rng), dx = dx0.clone();  // ADDED INTO
  Tensor dw0 = randn({C}, rng), dw = dw0.clone();
  Tensor db0 = randn({C}, rng), db = db0.clone();
  be().layernorm_backward(dy, x, w, mean, rstd, dx, dw, db);

  const Vec vdy = vec(dy);
  auto loss = [&](const Vec& xx, const Vec& ww, const Vec& bb) {
    return dot(vdy, layernorm_ref(xx, ww, bb, N, C, eps));
  };
  Vec gx = numeric_grad([&](const Vec& v) { return loss(v, vw, vb); }, vx);
  Vec gw = numeric_grad([&](const Vec& v) { return loss(vx, v, vb); }, vw);
  Vec gb = numeric_grad([&](const Vec& v) { return loss(vx, vw, v); }, vb);
  expect_close(sub(vec(dx), vec(dx0)), gx, "layernorm dx (added into)", 1e-5, 2e-5);
  expect_close(sub(vec(dw), vec(dw0)), gw, "layernorm dw (accumulated)");
  expect_close(sub(vec(db), vec(db0)), gb, "layernorm db (accumulated)");

  // The analytic double reference used for the large case agrees with the differences.
  Vec ax, aw, ab;
  layernorm_backward_ref(vdy, vx, vw, N, C, eps, ax, aw, ab);
  expect_close(ax, gx, "layernorm_backward_ref dx", 1e-7, 1e-7);
  expect_close(aw, gw, "layernorm_backward_ref dw", 1e-7, 1e-7);
}

TEST(CpuOps, LayerNormLargeParallel) {
  std::mt19937 rng(6);
  const int64_t N = 600, C = 65;
  const float eps = 1e-5f;
  Tensor x = randn({N, C}, rng, 3.0f), w = randn({C}, rng), b = randn({C}, rng);
  for (int64_t i = 0; i < N; ++i) x.data<float>()[i * C] += float(i % 7);  // varied means
  Tensor y = Tensor::empty({N, C}), mean = Tensor::empty({N}), rstd = Tensor::empty({N});
  be().layernorm_forward(x, w, b, eps, y, mean, rstd);
  const Vec vx = vec(x), vw = vec(w);
  expect_close(y, layernorm_ref(vx, vw, vec(b), N, C, eps), "layernorm large y");
  Tensor dy = randn({N, C}, rng);
  Tensor dx = Tensor::zeros({N, C}), dw = Tensor::zeros({C}), db = Tensor::zeros({C});
  be().layernorm_backward(dy, x, w, mean, rstd, dx, dw, db);
  Vec gx, gw, gb;
  layernorm_backward_ref(vec(dy), vx, vw, N, C, eps, gx, gw, gb);
  expect_close(dx, gx, "layernorm large dx", 1e-5, 2e-5);
  expect_close(dw, gw, "layernorm large dw", 1e-5, 2e-5);
  expect_close(db, gb, "layernorm large db");
}

TEST(CpuOps, LayerNormRejectsBadShapes) {
  Tensor x = Tensor::zeros({4, 6}), w = Tensor::zeros({6}), b = Tensor::zeros({5});
  Tensor y = Tensor::zeros({4, 6}), mean = Tensor::zeros({4}), rstd = Tensor::zeros({3});
  EXPECT_THROW(be().layernorm_forward(x, w, b, 1e-5f, y, mean, rstd), Error);
  Tensor b6 = Tensor::zeros({6});
  EXPECT_THROW(be().layernorm_forward(x, w, b6, 1e-5f, y, mean, rstd), Error);
}

// ---- GELU ----

TEST(CpuOps, GeluForwardBackward) {
  std::mt19937 rng(7);
  std::vector<float> xs = {0.0f,  1e-8f, -1e-8f, 0.5f,  -0.5f,  1.0f,  -1.0f,  2.5f,   -2.5f,
                           -5.0f, 5.0f,  -10.0f, 10.0f, -30.0f, 30.0f, 100.0f, -100.0f};
  std::normal_distribution<float> d(0.0f, 3.0f);
  while (xs.size() < 203) xs.push_back(d(rng));  // odd length
  Tensor x = Tensor::from_vector(xs, {int64_t(xs.size())});
  Tensor y = filled(x.shape(), kNaN);
  be().gelu_forward(x, y);
  Vec want(xs.size()), want_grad(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) want[i] = gelu_ref(xs[i]);
  expect_close(vec(y), want, "gelu_forward", 2e-6, 1e-7);

  Tensor dy = randn(x.shape(), rng);
  Tensor dx = filled(x.shape(), kNaN);
  be().gelu_backward(dy, x, dx);
  const Vec vdy = vec(dy);
  // Finite differences of sum(dy * gelu(x)) in double (elementwise, so one pass).
  Vec fd = numeric_grad(
      [&](const Vec& v) {
        double s = 0;
        for (size_t i = 0; i < v.size(); ++i) s += vdy[i] * gelu_ref(v[i]);
        return s;
      },
      vec(x), 1e-6);
  for (size_t i = 0; i < xs.size(); ++i) want_grad[i] = vdy[i] * gelu_grad_ref(xs[i]);
  expect_close(fd, want_grad, "gelu finite differences vs analytic", 1e-6, 1e-7);
  expect_close(vec(dx), want_grad, "gelu_backward", 2e-6, 1e-7);

  // dx may alias dy.
  Tensor inplace = dy.clone();
  be().gelu_backward(inplace, x, inplace);
  EXPECT_EQ(vec(inplace), vec(dx));

  // Far tails: gelu(x) -> x, gelu'(x) -> 1 for x >> 0, and both -> 0 for x << 0 (no inf/NaN
  // from the clamped exp or an overflowing x^3).
  Tensor big = Tensor::from_vector<float>({1e6f, -1e6f, 1e15f, -1e15f, 3e38f, -3e38f}, {6});
  Tensor gy = Tensor::empty({6}), gdx = Tensor::empty({6});
  be().gelu_forward(big, gy);
  be().gelu_backward(filled({6}, 2.0f), big, gdx);
  for (int i = 0; i < 6; ++i) {
    const float xi = big.data<float>()[i];
    EXPECT_EQ(gy.data<float>()[i], xi > 0 ? xi : 0.0f) << xi;
    EXPECT_EQ(gdx.data<float>()[i], xi > 0 ? 2.0f : 0.0f) << xi;
  }
}

TEST(CpuOps, GeluLargeParallel) {
  std::mt19937 rng(8);
  Tensor x = randn({3, 70001}, rng, 2.0f);
  Tensor y = Tensor::empty(x.shape()), dy = randn(x.shape(), rng), dx = Tensor::empty(x.shape());
  be().gelu_forward(x, y);
  be().gelu_backward(dy, x, dx);
  const Vec vx = vec(x), vdy = vec(dy);
  Vec want(vx.size()), want_grad(vx.size());
  for (size_t i = 0; i < vx.size(); ++i) {
    want[i] = gelu_ref(vx[i]);
    want_grad[i] = vdy[i] * gelu_grad_ref(vx[i]);
  }
  expect_close(vec(y), want, "gelu large", 2e-6, 1e-7);
  expect_close(vec(dx), want_grad, "gelu large backward", 2e-6, 1e-7);
}

// ---- attention ----

void run_attention_case(int64_t B, int64_t T, int64_t C, int H, std::mt19937& rng) {
  const std::string what = "attention B " + std::to_string(B) + " T " + std::to_string(T) + " C " +
                           std::to_string(C) + " H " + std::to_string(H);
  Tensor qkv = randn({B, T, 3 * C}, rng);
  Tensor out = filled({B, T, C}, kNaN), att = filled({B, H, T, T}, kNaN);
  be().attention_forward(qkv, H, out, att);
  const Vec vqkv = vec(qkv);
  Vec ratt;
  expect_close(out, attention_ref(vqkv, B, T, C, H, &ratt), what + " out");
  // att: compare the lower triangle only (upper is unspecified).
  Vec got_att = vec(att), lower_got, lower_want;
  for (int64_t bh = 0; bh < B * H; ++bh)
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = 0; j <= i; ++j) {
        lower_got.push_back(got_att[size_t((bh * T + i) * T + j)]);
        lower_want.push_back(ratt[size_t((bh * T + i) * T + j)]);
      }
  expect_close(lower_got, lower_want, what + " att");

  // Backward must not read att above the diagonal: poison it.
  float* pa = att.data<float>();
  for (int64_t bh = 0; bh < B * H; ++bh)
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = i + 1; j < T; ++j) pa[(bh * T + i) * T + j] = kNaN;
  Tensor dout = randn({B, T, C}, rng);
  Tensor dqkv = filled(qkv.shape(), kNaN);  // overwritten
  be().attention_backward(dout, qkv, att, H, dqkv);
  const Vec vdout = vec(dout);
  Vec fd =
      numeric_grad([&](const Vec& v) { return dot(vdout, attention_ref(v, B, T, C, H)); }, vqkv);
  expect_close(dqkv, fd, what + " dqkv", 1e-5, 1e-5);
}

TEST(CpuOps, AttentionForwardBackwardFiniteDifferences) {
  std::mt19937 rng(9);
  run_attention_case(2, 7, 12, 3, rng);  // hd = 4
  run_attention_case(1, 1, 4, 1, rng);   // a single token
  run_attention_case(3, 5, 8, 1, rng);   // one head
}

TEST(CpuOps, AttentionMultipleBlocks) {
  std::mt19937 rng(10);
  run_attention_case(1, 70, 16, 2, rng);  // several query blocks, ragged last block
}

TEST(CpuOps, AttentionLargeForward) {
  // Benchmark-like head size, many (b, h) pairs; forward against the reference only.
  std::mt19937 rng(11);
  const int64_t B = 2, T = 100, C = 128;
  const int H = 2;
  Tensor qkv = randn({B, T, 3 * C}, rng, 0.5f);
  Tensor out = Tensor::empty({B, T, C}), att = Tensor::empty({B, H, T, T});
  be().attention_forward(qkv, H, out, att);
  expect_close(out, attention_ref(vec(qkv), B, T, C, H), "attention large out");
}

TEST(CpuOps, AttentionRejectsBadShapes) {
  Tensor qkv = Tensor::zeros({2, 5, 36}), out = Tensor::zeros({2, 5, 12});
  Tensor att = Tensor::zeros({2, 3, 5, 5});
  EXPECT_THROW(be().attention_forward(qkv, 5, out, att), Error);  // 5 does not divide 12
  Tensor bad_att = Tensor::zeros({2, 3, 5, 4});
  EXPECT_THROW(be().attention_forward(qkv, 3, out, bad_att), Error);
  Tensor bad_qkv = Tensor::zeros({2, 5, 35});
  EXPECT_THROW(be().attention_forward(bad_qkv, 3, out, att), Error);
  Tensor bad_dqkv = Tensor::zeros({2, 5, 12});
  EXPECT_THROW(be().attention_backward(out, qkv, att, 3, bad_dqkv), Error);
}

// ---- embedding ----

TEST(CpuOps, EmbeddingForwardBackward) {
  std::mt19937 rng(12);
  const int64_t B = 2, T = 5, C = 12, Vp = 20, Tmax = 8;
  std::vector<int32_t> tok = {3, 7, 3, 19, 0, 7, 7, 1, 3, 12};  // repeats collide in dwte
  Tensor tokens = Tensor::from_vector(tok, {B, T});
  Tensor wte = randn({Vp, C}, rng), wpe = randn({Tmax, C}, rng);
  Tensor out = filled({B, T, C}, kNaN);
  be().embedding_forward(tokens, wte, wpe, out);
  const Vec vte = vec(wte), vpe = vec(wpe);
  Vec want(size_t(B * T * C));
  for (int64_t bt = 0; bt < B * T; ++bt)
    for (int64_t c = 0; c < C; ++c)
      want[bt * C + c] = float(vte[tok[bt] * C + c] + vpe[(bt % T) * C + c]);
  EXPECT_EQ(vec(out), want);  // exact: one f32 add

  Tensor dout = randn({B, T, C}, rng);
  Tensor dwte0 = randn({Vp, C}, rng), dwte = dwte0.clone();
  Tensor dwpe0 = randn({Tmax, C}, rng), dwpe = dwpe0.clone();
  be().embedding_backward(dout, tokens, dwte, dwpe);
  const Vec vdout = vec(dout);
  auto loss = [&](const Vec& te, const Vec& pe) {
    double s = 0;
    for (int64_t bt = 0; bt < B * T; ++bt)
      for (int64_t c = 0; c < C; ++c)
        s += vdout[bt * C + c] * (te[tok[bt] * C + c] + pe[(bt % T) * C + c]);
    return s;
  };
  Vec gte = numeric_grad([&](const Vec& v) { return loss(v, vpe); }, vte);
  Vec gpe = numeric_grad([&](const Vec& v) { return loss(vte, v); }, vpe);
  expect_close(sub(vec(dwte), vec(dwte0)), gte, "embedding dwte (accumulated)");
  expect_close(sub(vec(dwpe), vec(dwpe0)), gpe, "embedding dwpe (accumulated)");
  // Rows of wpe beyond T and unused token rows are untouched.
  for (int64_t c = 0; c < C; ++c) {
    EXPECT_EQ(dwpe.data<float>()[(Tmax - 1) * C + c], dwpe0.data<float>()[(Tmax - 1) * C + c]);
    EXPECT_EQ(dwte.data<float>()[2 * C + c], dwte0.data<float>()[2 * C + c]);
  }
}

TEST(CpuOps, EmbeddingLargeParallel) {
  std::mt19937 rng(13);
  const int64_t B = 4, T = 64, C = 100, Vp = 50;
  std::vector<int32_t> tok(size_t(B * T));
  std::uniform_int_distribution<int32_t> ud(0, int32_t(Vp - 1));
  for (auto& t : tok) t = ud(rng);
  Tensor tokens = Tensor::from_vector(tok, {B, T});
  Tensor dout = randn({B, T, C}, rng);
  Tensor dwte = Tensor::zeros({Vp, C}), dwpe = Tensor::zeros({T, C});
  be().embedding_backward(dout, tokens, dwte, dwpe);
  const Vec vd = vec(dout);
  Vec gte(size_t(Vp * C), 0.0), gpe(size_t(T * C), 0.0);
  for (int64_t bt = 0; bt < B * T; ++bt)
    for (int64_t c = 0; c < C; ++c) {
      gte[tok[bt] * C + c] += vd[bt * C + c];
      gpe[(bt % T) * C + c] += vd[bt * C + c];
    }
  expect_close(dwte, gte, "embedding large dwte");
  expect_close(dwpe, gpe, "embedding large dwpe");
}

TEST(CpuOps, EmbeddingRejectsBadTokens) {
  Tensor wte = Tensor::zeros({10, 4}), wpe = Tensor::zeros({3, 4}), out = Tensor::zeros({1, 3, 4});
  Tensor bad = Tensor::from_vector<int32_t>({1, 10, 2}, {1, 3});
  EXPECT_THROW(be().embedding_forward(bad, wte, wpe, out), Error);
  Tensor neg = Tensor::from_vector<int32_t>({1, -1, 2}, {1, 3});
  EXPECT_THROW(be().embedding_backward(out, neg, wte, wpe), Error);
  Tensor too_long = Tensor::from_vector<int32_t>({1, 2, 3, 4}, {1, 4});
  Tensor out4 = Tensor::zeros({1, 4, 4});
  EXPECT_THROW(be().embedding_forward(too_long, wte, wpe, out4), Error);  // T > Tmax
  Tensor as_float = Tensor::zeros({1, 3});
  EXPECT_THROW(be().embedding_forward(as_float, wte, wpe, out), Error);
}

// ---- cross-entropy ----

TEST(CpuOps, CrossEntropyPaddedVocab) {
  std::mt19937 rng(14);
  const int64_t N = 7, Vp = 256, V = 200;
  Tensor logits = randn({N, Vp}, rng, 2.0f);
  std::vector<int32_t> tg = {0, 199, 5, 17, 199, 100, 42};
  Tensor targets = Tensor::from_vector(tg, {N});
  // Garbage in the padded columns must not matter.
  float* pl = logits.data<float>();
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = V; j < Vp; ++j)
      pl[i * Vp + j] =
          (j % 3 == 0) ? kNaN : (j % 3 == 1 ? 1e30f : -std::numeric_limits<float>::infinity());
  pl[1 * Vp + 3] = 40.0f;  // a dominant logit
  const Vec vl = vec(logits);
  Tensor losses = filled({N}, kNaN);
  be().cross_entropy_forward(logits, targets, V, losses);
  expect_close(losses, cross_entropy_ref(vl, tg, N, Vp, V), "cross_entropy losses");

  const float dloss = 1.0f / float(N);
  Tensor dlogits = filled({N, Vp}, kNaN);
  be().cross_entropy_backward(logits, targets, V, dloss, dlogits);
  // Finite differences over the real columns of sum_i dloss * loss_i.
  Vec fd = numeric_grad(
      [&](const Vec& v) {
        Vec l = cross_entropy_ref(v, tg, N, Vp, V);
        double s = 0;
        for (double x : l) s += dloss * x;
        return s;
      },
      vl);
  const Vec got = vec(dlogits);
  Vec got_real, want_real;
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < Vp; ++j) {
      if (j < V) {
        got_real.push_back(got[i * Vp + j]);
        want_real.push_back(fd[i * Vp + j]);
      } else {
        EXPECT_EQ(got[i * Vp + j], 0.0f) << "padded column " << j << " of row " << i;
      }
    }
  expect_close(got_real, want_real, "cross_entropy dlogits", 1e-5, 1e-5);

  // dlogits may alias logits (the logits buffer is reused for its gradient).
  Tensor inplace = logits.clone();
  be().cross_entropy_backward(inplace, targets, V, dloss, inplace);
  EXPECT_EQ(vec(inplace), got);
}

TEST(CpuOps, CrossEntropyLargeParallel) {
  std::mt19937 rng(15);
  const int64_t B = 8, T = 32, Vp = 512, V = 500, N = B * T;
  Tensor logits = randn({B, T, Vp}, rng, 3.0f);
  std::vector<int32_t> tg(static_cast<size_t>(N));
  std::uniform_int_distribution<int32_t> ud(0, int32_t(V - 1));
  for (auto& t : tg) t = ud(rng);
  Tensor targets = Tensor::from_vector(tg, {B, T});
  Tensor losses = Tensor::empty({B, T});
  be().cross_entropy_forward(logits, targets, V, losses);
  const Vec vl = vec(logits);
  expect_close(losses, cross_entropy_ref(vl, tg, N, Vp, V), "cross_entropy large losses");
  Tensor dlogits = Tensor::empty({B, T, Vp});
  const float dloss = 0.25f;
  be().cross_entropy_backward(logits, targets, V, dloss, dlogits);
  Vec want(vl.size(), 0.0);  // dloss * (softmax - onehot), analytic in double
  for (int64_t i = 0; i < N; ++i) {
    double mx = -1e300, sum = 0;
    for (int64_t j = 0; j < V; ++j) mx = std::max(mx, vl[i * Vp + j]);
    for (int64_t j = 0; j < V; ++j) sum += std::exp(vl[i * Vp + j] - mx);
    for (int64_t j = 0; j < V; ++j)
      want[i * Vp + j] = dloss * (std::exp(vl[i * Vp + j] - mx) / sum - (j == tg[i] ? 1 : 0));
  }
  expect_close(dlogits, want, "cross_entropy large dlogits", 1e-5, 1e-6);
}

TEST(CpuOps, CrossEntropyRejectsBadTargets) {
  Tensor logits = Tensor::zeros({2, 8}), losses = Tensor::zeros({2});
  Tensor bad = Tensor::from_vector<int32_t>({1, 6}, {2});  // 6 >= vocab 6
  EXPECT_THROW(be().cross_entropy_forward(logits, bad, 6, losses), Error);
  Tensor ok = Tensor::from_vector<int32_t>({1, 5}, {2});
  EXPECT_THROW(be().cross_entropy_forward(logits, ok, 9, losses), Error);  // vocab > Vp
  Tensor d = Tensor::zeros({2, 8});
  EXPECT_THROW(be().cross_entropy_backward(logits, bad, 6, 1.0f, d), Error);
  be().cross_entropy_forward(logits, ok, 6, losses);
  EXPECT_NEAR(losses.data<float>()[0], std::log(6.0), 1e-6);  // uniform over 6 columns
}

// ---- elementwise ----

TEST(CpuOps, AddAndScale) {
  std::mt19937 rng(16);
  for (int64_t n : {int64_t(13), int64_t(100003)}) {
    Tensor a = randn({n}, rng), b = randn({n}, rng), out = filled({n}, kNaN);
    be().add(a, b, out);
    const Vec va = vec(a), vb = vec(b);
    Vec want(va.size());
    for (size_t i = 0; i < va.size(); ++i) want[i] = float(va[i] + vb[i]);
    EXPECT_EQ(vec(out), want);
    be().add(a, b, a);  // out aliases a
    EXPECT_EQ(vec(a), want);
    be().scale(a, -0.5f);
    for (size_t i = 0; i < want.size(); ++i) want[i] = float(float(want[i]) * -0.5f);
    EXPECT_EQ(vec(a), want);
  }
  Tensor a = Tensor::zeros({3}), b = Tensor::zeros({4});
  EXPECT_THROW(be().add(a, b, a), Error);
}

// ---- optimizer ----

TEST(CpuOps, AdamWMatchesDoubleReferenceOverSteps) {
  std::mt19937 rng(17);
  for (int64_t n : {int64_t(37), int64_t(50001)}) {
    Tensor p = randn({n}, rng), m = Tensor::zeros({n}), v = Tensor::zeros({n});
    Vec rp = vec(p), rm(size_t(n), 0.0), rv(size_t(n), 0.0);
    AdamWOptions opt;
    opt.lr = 3e-3f;
    opt.beta1 = 0.9f;
    opt.beta2 = 0.95f;
    opt.eps = 1e-8f;
    opt.weight_decay = 0.1f;
    for (int64_t step = 1; step <= 6; ++step) {
      opt.step = step;
      Tensor g = randn({n}, rng, step == 3 ? 1e-3f : 1.0f);  // one step with tiny gradients
      if (step == 4) opt.lr = 1e-3f;                         // lr schedule
      const Vec vg = vec(g);
      be().adamw_update(p, g, m, v, opt);
      const double lr = opt.lr, wd = opt.weight_decay, b1 = opt.beta1, b2 = opt.beta2;
      const double bc1 = 1 - std::pow(b1, double(step)), bc2 = 1 - std::pow(b2, double(step));
      for (int64_t i = 0; i < n; ++i) {
        rp[i] -= lr * wd * rp[i];
        rm[i] = b1 * rm[i] + (1 - b1) * vg[i];
        rv[i] = b2 * rv[i] + (1 - b2) * vg[i] * vg[i];
        rp[i] -= (lr / bc1) * rm[i] / (std::sqrt(rv[i]) / std::sqrt(bc2) + opt.eps);
      }
      const std::string at = " n " + std::to_string(n) + " step " + std::to_string(step);
      expect_close(m, rm, "adamw m" + at, 1e-5, 1e-6);
      expect_close(v, rv, "adamw v" + at, 1e-5, 1e-6);
      expect_close(p, rp, "adamw param" + at, 1e-6, 1e-6);
    }
  }
}

TEST(CpuOps, AdamWFirstStepIsSignedLr) {
  // Step 1 without decay: m/bc1 = g and sqrt(v/bc2) = |g|, so p moves by -lr * g / (|g| + eps).
  Tensor p = Tensor::from_vector<float>({1.0f, -2.0f, 0.5f}, {3});
  Tensor g = Tensor::from_vector<float>({0.3f, -4.0f, 0.0f}, {3});
  Tensor m = Tensor::zeros({3}), v = Tensor::zeros({3});
  AdamWOptions opt;
  opt.lr = 0.01f;
  be().adamw_update(p, g, m, v, opt);
  EXPECT_NEAR(p.data<float>()[0], 1.0f - 0.01f, 1e-6);
  EXPECT_NEAR(p.data<float>()[1], -2.0f + 0.01f, 1e-6);
  EXPECT_EQ(p.data<float>()[2], 0.5f);
  Tensor short_m = Tensor::zeros({2});
  EXPECT_THROW(be().adamw_update(p, g, short_m, v, opt), Error);
}

TEST(CpuOps, SumSquaresInDouble) {
  std::mt19937 rng(18);
  for (int64_t n : {int64_t(1), int64_t(1001), int64_t(3000017)}) {
    Tensor x = randn({n}, rng);
    double want = 0;
    for (double e : vec(x)) want += e * e;
    EXPECT_NEAR(be().sum_squares(x), want, 1e-12 * want) << n;
  }
  // 2^24 + 3 ones and a tiny value: an f32 accumulator could not hold this exactly.
  Tensor ones = filled({(int64_t(1) << 24) + 3}, 1.0f);
  ones.data<float>()[5] = 1e-4f;
  const double tiny = double(1e-4f) * double(1e-4f);
  EXPECT_NEAR(be().sum_squares(ones), double((int64_t(1) << 24) + 2) + tiny, 1e-7);
  EXPECT_EQ(be().sum_squares(Tensor::zeros({0})), 0.0);
}

}  // namespace
}  // namespace peng

namespace peng {
namespace {

// Two vocabulary shards (rows/columns [0, 6) and [6, 12) of a table padded to 12 for a
// vocabulary of 10) reproduce the unsharded embedding and cross-entropy.
TEST(CpuOps, VocabShardsReproduceEmbeddingAndCrossEntropy) {
  std::mt19937 rng(7);
  const int64_t B = 2, T = 3, C = 5, V = 10, Vp = 12, half = 6, N = B * T;
  std::vector<int32_t> ids = {0, 5, 6, 9, 3, 7};
  Tensor tokens = Tensor::from_vector<int32_t>(ids, {B, T});
  Tensor wte = randn({Vp, C}, rng), wpe = randn({T, C}, rng);
  Tensor full = Tensor::zeros({B, T, C});
  be().embedding_forward(tokens, wte, wpe, full);
  Tensor sum = Tensor::zeros({B, T, C}), part = Tensor::zeros({B, T, C});
  for (int s = 0; s < 2; ++s) {
    Tensor none;
    be().embedding_forward_shard(tokens, wte.slice(s * half, (s + 1) * half), s * half,
                                 s == 0 ? wpe : none, part);
    be().add(sum, part, sum);
  }
  expect_close(sum, vec(full), "embedding", 0, 0);

  Tensor dout = randn({B, T, C}, rng);
  Tensor dwte = Tensor::zeros({Vp, C}), dwpe = Tensor::zeros({T, C});
  be().embedding_backward(dout, tokens, dwte, dwpe);
  Tensor dwte_shards = Tensor::zeros({Vp, C}), dwpe_shard = Tensor::zeros({T, C});
  for (int s = 0; s < 2; ++s) {
    Tensor rows = dwte_shards.slice(s * half, (s + 1) * half), none;
    be().embedding_backward_shard(dout, tokens, s * half, rows, s == 0 ? dwpe_shard : none);
  }
  expect_close(dwte_shards, vec(dwte), "dwte", 0, 0);
  expect_close(dwpe_shard, vec(dwpe), "dwpe", 0, 0);

  Tensor logits = randn({N, Vp}, rng, 3.0f);
  Tensor targets = Tensor::from_vector<int32_t>({1, 9, 6, 0, 5, 7}, {N});
  Tensor losses = Tensor::zeros({N});
  be().cross_entropy_forward(logits, targets, V, losses);
  Tensor mx = Tensor::zeros({N}), m = Tensor::zeros({N});
  Tensor stats = Tensor::zeros({N, 2}), st = Tensor::zeros({N, 2});
  std::vector<Tensor> cols;
  for (int s = 0; s < 2; ++s) {
    cols.push_back(Tensor::zeros({N, half}));
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j < half; ++j) {
        cols[s].data<float>()[i * half + j] = logits.data<float>()[i * Vp + s * half + j];
      }
    }
  }
  const int64_t valid[2] = {6, 4};
  for (int64_t i = 0; i < N; ++i) mx.data<float>()[i] = -1e30f;
  for (int s = 0; s < 2; ++s) {
    be().cross_entropy_shard_max(cols[s], valid[s], m);
    for (int64_t i = 0; i < N; ++i)
      mx.data<float>()[i] = std::max(mx.data<float>()[i], m.data<float>()[i]);
  }
  for (int s = 0; s < 2; ++s) {
    be().cross_entropy_shard_sums(cols[s], targets, s * half, valid[s], mx, st);
    be().add(stats, st, stats);
  }
  Vec sharded_loss;
  for (int64_t i = 0; i < N; ++i) {
    const float* r = stats.data<float>() + 2 * i;
    sharded_loss.push_back(std::log(double(r[0])) + mx.data<float>()[i] - r[1]);
  }
  expect_close(sharded_loss, vec(losses), "loss", 1e-5, 1e-6);

  Tensor dlogits = Tensor::zeros({N, Vp});
  be().cross_entropy_backward(logits, targets, V, 0.5f, dlogits);
  for (int s = 0; s < 2; ++s) {
    Tensor d = Tensor::zeros({N, half});
    be().cross_entropy_shard_backward(cols[s], targets, s * half, valid[s], mx, stats, 0.5f, d);
    Vec want;
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j < half; ++j)
        want.push_back(dlogits.data<float>()[i * Vp + s * half + j]);
    }
    expect_close(d, want, "dlogits shard " + std::to_string(s), 1e-5, 1e-6);
  }
}

}  // namespace
}  // namespace peng
