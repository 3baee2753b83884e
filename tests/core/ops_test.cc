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

#include "peng/core/backend.h"

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

// f throws peng::Error whose message starts with "op:" (the op names itself) and contains
// `needle`.
void expect_op_error(const std::function<void()>& f, const std::string& op,
                     const std::string& needle = "") {
  try {
    f();
    ADD_FAILURE() << op << ": no throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(op + ":", 0), 0u) << "message does not start with " << op << ": " << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "no '" << needle << "' in: " << msg;
  }
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

// cast: f32 -> bf16 is core/dtype.h's rounding for every element (ties to even, NaN kept,
// overflow to infinity), bf16 -> f32 exact; the wrong dtype or shape is an error naming cast.
TEST(CpuOps, CastRoundsLikeDtypeAndWidensExactly) {
  const int64_t n = 100003;  // over the OpenMP threshold
  Tensor x = Tensor::empty({n});
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> d(-1e3f, 1e3f);
  float* px = x.data<float>();
  for (int64_t i = 0; i < n; ++i) px[i] = d(rng);
  px[0] = kNaN;
  px[1] = 1.0f + 1.0f / 256;  // a tie: rounds to even (1.0)
  px[2] = 3.4e38f;            // above bf16's largest finite value
  Tensor y = Tensor::empty({n}, DType::kBF16);
  be().cast(x, y);
  const auto* py = static_cast<const uint16_t*>(y.raw_data());
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(py[i], f32_to_bf16(px[i])) << i;
  EXPECT_TRUE(std::isnan(bf16_to_f32(py[0])));
  EXPECT_EQ(bf16_to_f32(py[1]), 1.0f);
  EXPECT_TRUE(std::isinf(bf16_to_f32(py[2])));
  Tensor back = Tensor::empty({n});
  be().cast(y, back);
  for (int64_t i = 1; i < n; ++i) ASSERT_EQ(back.data<float>()[i], bf16_to_f32(py[i])) << i;
  Tensor wrong = Tensor::empty({n - 1}, DType::kBF16);
  EXPECT_THROW(be().cast(x, wrong), Error);
  EXPECT_THROW(be().cast(x, back), Error);  // f32 -> f32 is not a cast
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

// w stored (R, S) -> (S, R).
Vec transpose(const Vec& w, int64_t r, int64_t s) {
  Vec t(w.size());
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < s; ++j) t[size_t(j * r + i)] = w[size_t(i * s + j)];
  return t;
}

// A linear layer in either weight layout against linear_ref (which takes w (Cin, Cout); a
// kOutIn weight (Cout, Cin) is transposed for it): y, dx (overwritten), dw and dbias
// (accumulated into random starting values), by finite differences or analytically.
void run_linear_case(const Shape& xs, int64_t cout, bool with_bias, bool with_dx, bool with_dbias,
                     bool finite_diff, std::mt19937& rng,
                     WeightLayout layout = WeightLayout::kInOut) {
  const bool out_in = layout == WeightLayout::kOutIn;
  const std::string what = std::string("linear ") + (out_in ? "kOutIn " : "kInOut ") +
                           shape_str(xs) + " -> " + std::to_string(cout);
  const int64_t cin = xs.back();
  Tensor x = randn(xs, rng);
  const int64_t n = x.numel() / cin;
  const Shape ws = out_in ? Shape{cout, cin} : Shape{cin, cout};
  Tensor w = randn(ws, rng, 0.3f);
  // The weight as linear_ref takes it, (Cin, Cout), from the stored layout.
  auto w_in_out = [&](const Vec& wv) { return out_in ? transpose(wv, cout, cin) : wv; };
  Tensor bias = with_bias ? randn({cout}, rng) : Tensor();
  Shape ys = xs;
  ys.back() = cout;
  Tensor y = filled(ys, kNaN);
  be().linear_forward(x, w, bias, y, layout);
  Vec bv = with_bias ? vec(bias) : Vec();
  expect_close(y, linear_ref(vec(x), w_in_out(vec(w)), with_bias ? &bv : nullptr, n, cin, cout),
               what + " y");

  Tensor dy = randn(ys, rng);
  Tensor dx = with_dx ? filled(xs, kNaN) : Tensor();  // overwritten
  Tensor dw0 = randn(ws, rng), dw = dw0.clone();      // accumulated into
  Tensor db0 = randn({cout}, rng), db = with_dbias ? db0.clone() : Tensor();
  be().linear_backward(dy, x, w, dx, dw, db, layout);

  const Vec vx = vec(x), vw = vec(w), vdy = vec(dy);
  Vec gx, gw, gb;
  if (finite_diff) {
    auto loss = [&](const Vec& xx, const Vec& ww, const Vec* bb) {
      return dot(vdy, linear_ref(xx, w_in_out(ww), bb, n, cin, cout));
    };
    const Vec* pb = with_bias ? &bv : nullptr;
    gx = numeric_grad([&](const Vec& v) { return loss(v, vw, pb); }, vx);
    gw = numeric_grad([&](const Vec& v) { return loss(vx, v, pb); }, vw);
    Vec b0(size_t(cout), 0.0);
    gb = numeric_grad([&](const Vec& v) { return loss(vx, vw, &v); }, b0);
  } else {  // dx = dy w^T, dw = x^T dy (as (Cin, Cout)), db = column sums of dy
    const Vec wio = w_in_out(vw);
    gx.assign(size_t(n * cin), 0);
    gw.assign(size_t(cin * cout), 0);
    gb.assign(size_t(cout), 0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t a = 0; a < cin; ++a)
        for (int64_t o = 0; o < cout; ++o) {
          gx[i * cin + a] += vdy[i * cout + o] * wio[a * cout + o];
          gw[a * cout + o] += vx[i * cin + a] * vdy[i * cout + o];
        }
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < cout; ++o) gb[o] += vdy[i * cout + o];
    if (out_in) gw = transpose(gw, cin, cout);
  }
  if (with_dx) expect_close(dx, gx, what + " dx");
  expect_close(sub(vec(dw), vec(dw0)), gw, what + " dw (accumulated)");
  if (with_dbias) expect_close(sub(vec(db), vec(db0)), gb, what + " dbias (accumulated)");
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
  run_linear_case({40, 16}, 2100, true, true, true, false, rng);  // dbias: several column chunks
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

TEST(CpuOps, LinearOutInForwardBackwardFiniteDifferences) {
  std::mt19937 rng(31);
  const WeightLayout kOI = WeightLayout::kOutIn;
  run_linear_case({7, 12}, 10, true, true, true, true, rng, kOI);
  run_linear_case({2, 3, 12}, 5, true, true, true, true, rng, kOI);  // (B, T, C) input
  run_linear_case({7, 12}, 10, false, true, false, true, rng, kOI);  // no bias
  run_linear_case({5, 9}, 4, true, false, true, true, rng, kOI);     // dx skipped
  run_linear_case({6, 8}, 8, false, false, false, true, rng, kOI);   // square w: no bias, no dx
  run_linear_case({1, 3}, 1, true, true, true, true, rng, kOI);      // a single row and output
}

TEST(CpuOps, LinearOutInLargeParallelPaths) {
  std::mt19937 rng(32);
  const WeightLayout kOI = WeightLayout::kOutIn;
  run_linear_case({4, 37, 50}, 130, true, true, true, false, rng, kOI);
  run_linear_case({300, 64}, 1000, true, true, true, false, rng, kOI);   // y and dx split by rows
  run_linear_case({100, 64}, 700, false, true, false, false, rng, kOI);  // few rows: by columns
  run_linear_case({512, 96}, 300, false, true, false, false, rng, kOI);  // dw (300, 96) threaded
  run_linear_case({40, 16}, 2100, true, true, true, false, rng, kOI);    // dbias column chunks
}

TEST(CpuOps, LinearOutInMatchesInOutWithTransposedWeight) {
  std::mt19937 rng(33);
  const int64_t n = 260, cin = 96, cout = 140;
  Tensor x = randn({n, cin}, rng), w_oi = randn({cout, cin}, rng), bias = randn({cout}, rng);
  Tensor w_io = Tensor::from_vector(std::vector<float>(cin * cout), {cin, cout});
  for (int64_t o = 0; o < cout; ++o)
    for (int64_t i = 0; i < cin; ++i)
      w_io.data<float>()[i * cout + o] = w_oi.data<float>()[o * cin + i];
  Tensor y_oi = Tensor::empty({n, cout}), y_io = Tensor::empty({n, cout});
  be().linear_forward(x, w_oi, bias, y_oi, WeightLayout::kOutIn);
  be().linear_forward(x, w_io, bias, y_io, WeightLayout::kInOut);
  expect_close(y_oi, vec(y_io), "kOutIn y vs kInOut y", 1e-5, 1e-6);
  Tensor dy = randn({n, cout}, rng);
  Tensor dx_oi = Tensor::empty({n, cin}), dx_io = Tensor::empty({n, cin});
  Tensor dw_oi = Tensor::zeros({cout, cin}), dw_io = Tensor::zeros({cin, cout});
  Tensor db_oi = Tensor::zeros({cout}), db_io = Tensor::zeros({cout});
  be().linear_backward(dy, x, w_oi, dx_oi, dw_oi, db_oi, WeightLayout::kOutIn);
  be().linear_backward(dy, x, w_io, dx_io, dw_io, db_io, WeightLayout::kInOut);
  expect_close(dx_oi, vec(dx_io), "kOutIn dx vs kInOut dx", 1e-5, 1e-6);
  expect_close(vec(dw_oi), transpose(vec(dw_io), cin, cout), "kOutIn dw vs kInOut dw^T", 1e-5,
               1e-6);
  EXPECT_EQ(vec(db_oi), vec(db_io));
  // dw accumulates: a second call doubles it.
  Tensor dw_once = dw_oi.clone();
  Tensor none;
  be().linear_backward(dy, x, w_oi, none, dw_oi, none, WeightLayout::kOutIn);
  Vec twice = vec(dw_once);
  for (double& v : twice) v *= 2;
  expect_close(dw_oi, twice, "kOutIn dw accumulated twice", 1e-6, 1e-7);
}

TEST(CpuOps, LinearOutInRejectsBadShapes) {
  const WeightLayout kOI = WeightLayout::kOutIn;
  // x (4, 6) with w (Cout 3, Cin 6).
  Tensor x = Tensor::zeros({4, 6}), w = Tensor::zeros({3, 6}), y = Tensor::zeros({4, 3});
  be().linear_forward(x, w, Tensor(), y, kOI);  // valid
  // An (in, out) weight is refused in the (out, in) layout, and the error names the layout.
  Tensor w_io = Tensor::zeros({6, 3});
  expect_op_error([&] { be().linear_forward(x, w_io, Tensor(), y, kOI); }, "linear_forward",
                  "(Cout, Cin)");
  expect_op_error([&] { be().linear_forward(x, w, Tensor(), y); }, "linear_forward",
                  "(Cin, Cout)");  // and the other way round
  Tensor bad_y = Tensor::zeros({4, 6});
  expect_op_error([&] { be().linear_forward(x, w, Tensor(), bad_y, kOI); }, "linear_forward");
  Tensor bad_bias = Tensor::zeros({6});
  expect_op_error([&] { be().linear_forward(x, w, bad_bias, y, kOI); }, "linear_forward");
  Tensor dx = Tensor::zeros({4, 6}), db = Tensor::zeros({3});
  Tensor dw_io = Tensor::zeros({6, 3});  // dw must have w's (out, in) shape
  expect_op_error([&] { be().linear_backward(y, x, w, dx, dw_io, db, kOI); }, "linear_backward",
                  "[3, 6]");
  Tensor dw = Tensor::zeros({3, 6}), bad_dx = Tensor::zeros({4, 3});
  expect_op_error([&] { be().linear_backward(y, x, w, bad_dx, dw, db, kOI); }, "linear_backward");
  Tensor bad_dy = Tensor::zeros({4, 6});
  expect_op_error([&] { be().linear_backward(bad_dy, x, w, dx, dw, db, kOI); }, "linear_backward");
  Tensor wi = Tensor::zeros({3, 6}, DType::kI32);
  expect_op_error([&] { be().linear_forward(x, wi, Tensor(), y, kOI); }, "linear_forward");
  be().linear_backward(y, x, w, dx, dw, db, kOI);  // valid
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

// ---- Llama / Qwen ops: RMSNorm, SwiGLU, qk-norm, RoPE, grouped-query attention ----

namespace peng {
namespace {

// rmsnorm over rows of c: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps).
Vec rmsnorm_ref(const Vec& x, const Vec& w, int64_t n, int64_t c, double eps, Vec* rstd = nullptr) {
  Vec y(x.size());
  if (rstd) rstd->assign(size_t(n), 0);
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (int64_t j = 0; j < c; ++j) ss += x[i * c + j] * x[i * c + j];
    const double rs = 1.0 / std::sqrt(ss / double(c) + eps);
    for (int64_t j = 0; j < c; ++j) y[i * c + j] = x[i * c + j] * rs * w[j];
    if (rstd) (*rstd)[i] = rs;
  }
  return y;
}

// Analytic rmsnorm backward in double: dx (overwritten here), dw (one row's or all rows').
void rmsnorm_backward_ref(const Vec& dy, const Vec& x, const Vec& w, int64_t n, int64_t c,
                          double eps, Vec& dx, Vec& dw) {
  dx.assign(x.size(), 0);
  dw.assign(size_t(c), 0);
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0, gx = 0;
    for (int64_t j = 0; j < c; ++j) ss += x[i * c + j] * x[i * c + j];
    const double rs = 1.0 / std::sqrt(ss / double(c) + eps);
    for (int64_t j = 0; j < c; ++j) gx += w[j] * dy[i * c + j] * x[i * c + j] * rs;
    gx /= double(c);
    for (int64_t j = 0; j < c; ++j) {
      const double xh = x[i * c + j] * rs;
      dx[i * c + j] = rs * (w[j] * dy[i * c + j] - xh * gx);
      dw[j] += dy[i * c + j] * xh;
    }
  }
}

TEST(CpuOps, RmsNormForwardBackwardFiniteDifferences) {
  std::mt19937 rng(40);
  const int64_t B = 2, T = 3, C = 12, N = B * T;
  const float eps = 1e-6f;
  Tensor x = randn({B, T, C}, rng, 2.0f);
  x.data<float>()[0] += 3.0f;  // an off-centre row (no mean is subtracted)
  for (int64_t j = 0; j < C; ++j) x.data<float>()[C + j] *= 1e-3f;  // a tiny row: eps matters
  Tensor w = randn({C}, rng);
  Tensor y = filled({B, T, C}, kNaN), rstd = filled({B, T}, kNaN);
  be().rmsnorm_forward(x, w, eps, y, rstd);
  const Vec vx = vec(x), vw = vec(w);
  Vec rrstd;
  expect_close(y, rmsnorm_ref(vx, vw, N, C, eps, &rrstd), "rmsnorm y");
  expect_close(rstd, rrstd, "rmsnorm rstd");

  Tensor dy = randn({B, T, C}, rng);
  Tensor dx0 = randn({B, T, C}, rng), dx = dx0.clone();  // ADDED INTO
  Tensor dw0 = randn({C}, rng), dw = dw0.clone();        // accumulated
  be().rmsnorm_backward(dy, x, w, rstd, dx, dw);
  const Vec vdy = vec(dy);
  auto loss = [&](const Vec& xx, const Vec& ww) {
    return dot(vdy, rmsnorm_ref(xx, ww, N, C, eps));
  };
  Vec gx = numeric_grad([&](const Vec& v) { return loss(v, vw); }, vx, 1e-7);
  Vec gw = numeric_grad([&](const Vec& v) { return loss(vx, v); }, vw);
  expect_close(sub(vec(dx), vec(dx0)), gx, "rmsnorm dx (added into)", 1e-5, 2e-5);
  expect_close(sub(vec(dw), vec(dw0)), gw, "rmsnorm dw (accumulated)");
  Vec ax, aw;
  rmsnorm_backward_ref(vdy, vx, vw, N, C, eps, ax, aw);
  expect_close(ax, gx, "rmsnorm_backward_ref dx", 1e-6, 1e-6);
  expect_close(aw, gw, "rmsnorm_backward_ref dw", 1e-7, 1e-7);
}

TEST(CpuOps, RmsNormLargeParallel) {
  std::mt19937 rng(41);
  const int64_t N = 600, C = 65;
  const float eps = 1e-5f;
  Tensor x = randn({N, C}, rng, 3.0f), w = randn({C}, rng);
  Tensor y = Tensor::empty({N, C}), rstd = Tensor::empty({N});
  be().rmsnorm_forward(x, w, eps, y, rstd);
  const Vec vx = vec(x), vw = vec(w);
  Vec rrstd;
  expect_close(y, rmsnorm_ref(vx, vw, N, C, eps, &rrstd), "rmsnorm large y");
  expect_close(rstd, rrstd, "rmsnorm large rstd");
  Tensor dy = randn({N, C}, rng);
  Tensor dx0 = randn({N, C}, rng), dx = dx0.clone(), dw = Tensor::zeros({C});
  be().rmsnorm_backward(dy, x, w, rstd, dx, dw);
  Vec gx, gw;
  rmsnorm_backward_ref(vec(dy), vx, vw, N, C, eps, gx, gw);
  expect_close(sub(vec(dx), vec(dx0)), gx, "rmsnorm large dx", 1e-5, 2e-5);
  expect_close(dw, gw, "rmsnorm large dw", 1e-5, 2e-5);
  // dw is deterministic for a given thread count: a second call adds the same amount.
  Tensor dw2 = Tensor::zeros({C});
  be().rmsnorm_backward(dy, x, w, rstd, dx, dw2);
  EXPECT_EQ(vec(dw2), vec(dw));
}

TEST(CpuOps, RmsNormRejectsBadShapes) {
  const char* f = "rmsnorm_forward";
  const char* b = "rmsnorm_backward";
  Tensor x = Tensor::zeros({4, 6}), w = Tensor::zeros({6}), y = Tensor::zeros({4, 6});
  Tensor rstd = Tensor::zeros({4});
  be().rmsnorm_forward(x, w, 1e-5f, y, rstd);  // valid
  Tensor w5 = Tensor::zeros({5}), r3 = Tensor::zeros({3}), y5 = Tensor::zeros({4, 5});
  expect_op_error([&] { be().rmsnorm_forward(x, w5, 1e-5f, y, rstd); }, f, "w");
  expect_op_error([&] { be().rmsnorm_forward(x, w, 1e-5f, y, r3); }, f, "rstd");
  expect_op_error([&] { be().rmsnorm_forward(x, w, 1e-5f, y5, rstd); }, f, "y");
  expect_op_error([&] { be().rmsnorm_forward(x, w, 1e-5f, x, rstd); }, f, "share memory");
  Tensor xi = Tensor::zeros({4, 6}, DType::kI32);
  expect_op_error([&] { be().rmsnorm_forward(xi, w, 1e-5f, y, rstd); }, f, "f32");
  Tensor empty_c = Tensor::zeros({4, 0}), w0 = Tensor::zeros({0});
  expect_op_error([&] { be().rmsnorm_forward(empty_c, w0, 1e-5f, empty_c, rstd); }, f);
  Tensor dx = Tensor::zeros({4, 6}), dw = Tensor::zeros({6});
  be().rmsnorm_backward(y, x, w, rstd, dx, dw);  // valid
  expect_op_error([&] { be().rmsnorm_backward(y, x, w, rstd, dx, w5); }, b, "dw");
  expect_op_error([&] { be().rmsnorm_backward(y5, x, w, rstd, dx, dw); }, b, "dy");
  expect_op_error([&] { be().rmsnorm_backward(y, x, w, r3, dx, dw); }, b, "rstd");
  expect_op_error([&] { be().rmsnorm_backward(y, x, w, rstd, y5, dw); }, b, "dx");
  Tensor dwi = Tensor::zeros({6}, DType::kI32);
  expect_op_error([&] { be().rmsnorm_backward(y, x, w, rstd, dx, dwi); }, b, "f32");
}

// ---- SwiGLU ----

double silu_ref(double g) { return g / (1.0 + std::exp(-g)); }

// gate_up (N, 2F) -> out (N, F)
Vec swiglu_ref(const Vec& gu, int64_t n, int64_t f) {
  Vec out(size_t(n * f));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < f; ++j)
      out[i * f + j] = silu_ref(gu[i * 2 * f + j]) * gu[i * 2 * f + f + j];
  return out;
}

// dgate_up (N, 2F), analytic: dgate = dout u silu'(g), dup = dout silu(g).
Vec swiglu_backward_ref(const Vec& dout, const Vec& gu, int64_t n, int64_t f) {
  Vec d(gu.size());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < f; ++j) {
      const double g = gu[i * 2 * f + j], u = gu[i * 2 * f + f + j], s = 1.0 / (1.0 + std::exp(-g));
      d[i * 2 * f + j] = dout[i * f + j] * u * (s + g * s * (1 - s));
      d[i * 2 * f + f + j] = dout[i * f + j] * g * s;
    }
  return d;
}

TEST(CpuOps, SwiGluForwardBackward) {
  std::mt19937 rng(42);
  const int64_t B = 2, T = 3, F = 13;
  Tensor gu = randn({B, T, 2 * F}, rng, 3.0f);
  // Gates across the range, including the tails where exp over/underflows in f32.
  const float gates[] = {0.0f,  1e-8f,  -1e-8f, 0.5f,   -0.5f, 5.0f,  -5.0f,
                         20.0f, -20.0f, 60.0f,  -60.0f, 86.0f, -86.0f};
  for (size_t j = 0; j < sizeof gates / sizeof gates[0]; ++j) gu.data<float>()[j] = gates[j];
  Tensor out = filled({B, T, F}, kNaN);
  be().swiglu_forward(gu, out);
  const Vec vgu = vec(gu);
  const int64_t N = B * T;
  expect_close(out, swiglu_ref(vgu, N, F), "swiglu out", 2e-6, 1e-7);

  Tensor dout = randn({B, T, F}, rng);
  Tensor dgu = filled({B, T, 2 * F}, kNaN);  // overwritten
  be().swiglu_backward(dout, gu, dgu);
  const Vec vd = vec(dout);
  const Vec want = swiglu_backward_ref(vd, vgu, N, F);
  Vec fd = numeric_grad([&](const Vec& v) { return dot(vd, swiglu_ref(v, N, F)); }, vgu, 1e-6);
  expect_close(fd, want, "swiglu finite differences vs analytic", 1e-6, 1e-7);
  expect_close(dgu, want, "swiglu dgate_up", 2e-6, 1e-7);
}

TEST(CpuOps, SwiGluTails) {
  // Far tails: silu(g) -> g for g >> 0 and -> 0 for g << 0, silu' -> 1 and 0; no inf or NaN.
  const std::vector<float> g = {100.0f, -100.0f, 1e6f, -1e6f, 1e30f, -1e30f, 88.0f, -88.0f};
  const int64_t F = int64_t(g.size());
  std::vector<float> gu_v(g);
  for (int64_t j = 0; j < F; ++j) gu_v.push_back(2.0f);  // up = 2
  Tensor gu = Tensor::from_vector(gu_v, {1, 2 * F});
  Tensor out = Tensor::empty({1, F}), dgu = Tensor::empty({1, 2 * F});
  be().swiglu_forward(gu, out);
  be().swiglu_backward(filled({1, F}, 3.0f), gu, dgu);
  for (int64_t j = 0; j < F; ++j) {
    const float gj = g[size_t(j)];
    const double silu = silu_ref(gj);  // in double: exact 0 is within 1e-36 of it
    EXPECT_NEAR(out.data<float>()[j], 2.0 * silu, 1e-6 * std::abs(2.0 * silu) + 1e-30) << gj;
    EXPECT_NEAR(dgu.data<float>()[j], gj > 0 ? 6.0f : 0.0f, 1e-5) << gj;  // dgate
    EXPECT_NEAR(dgu.data<float>()[F + j], 3.0 * silu, 1e-6 * std::abs(3.0 * silu) + 1e-30) << gj;
  }
}

TEST(CpuOps, SwiGluLargeParallel) {
  std::mt19937 rng(43);
  const int64_t N = 300, F = 177;  // N * F above the parallel threshold
  Tensor gu = randn({N, 2 * F}, rng, 2.0f), dout = randn({N, F}, rng);
  Tensor out = Tensor::empty({N, F}), dgu = Tensor::empty({N, 2 * F});
  be().swiglu_forward(gu, out);
  be().swiglu_backward(dout, gu, dgu);
  const Vec vgu = vec(gu);
  expect_close(out, swiglu_ref(vgu, N, F), "swiglu large out", 2e-6, 1e-7);
  expect_close(dgu, swiglu_backward_ref(vec(dout), vgu, N, F), "swiglu large dgate_up", 2e-6, 1e-7);
}

TEST(CpuOps, SwiGluRejectsBadShapes) {
  const char* f = "swiglu_forward";
  const char* b = "swiglu_backward";
  Tensor gu = Tensor::zeros({4, 6}), out = Tensor::zeros({4, 3});
  be().swiglu_forward(gu, out);  // valid
  Tensor odd = Tensor::zeros({4, 7}), out4 = Tensor::zeros({4, 4}),
         out_rows = Tensor::zeros({3, 3});
  expect_op_error([&] { be().swiglu_forward(odd, out); }, f, "gate_up");
  expect_op_error([&] { be().swiglu_forward(gu, out4); }, f, "out");
  expect_op_error([&] { be().swiglu_forward(gu, out_rows); }, f, "out");
  Tensor gui = Tensor::zeros({4, 6}, DType::kI32);
  expect_op_error([&] { be().swiglu_forward(gui, out); }, f, "f32");
  Tensor dgu = Tensor::zeros({4, 6});
  be().swiglu_backward(out, gu, dgu);  // valid
  expect_op_error([&] { be().swiglu_backward(out4, gu, dgu); }, b, "dout");
  expect_op_error([&] { be().swiglu_backward(out, gu, out4); }, b, "dgate_up");
  Tensor dgu_half = dgu.flat_view(0, {4, 3});  // dout sharing dgate_up's memory
  expect_op_error([&] { be().swiglu_backward(dgu_half, gu, dgu); }, b, "share memory");
}

// ---- qk-norm ----

// qkv (rows, (H + 2K) * hd) -> out: per-head rmsnorm of the H + K q and k heads.
Vec qk_norm_ref(const Vec& qkv, int64_t rows, int64_t H, int64_t K, int64_t hd, const Vec& wq,
                const Vec& wk, double eps, Vec* rstd = nullptr) {
  const int64_t W = (H + 2 * K) * hd;
  Vec out = qkv;
  if (rstd) rstd->assign(size_t(rows * (H + K)), 0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t r = 0; r < H + K; ++r) {
      const size_t o = size_t(i * W + r * hd);
      Vec x(qkv.begin() + o, qkv.begin() + o + hd), rs;
      Vec y = rmsnorm_ref(x, r < H ? wq : wk, 1, hd, eps, &rs);
      std::copy(y.begin(), y.end(), out.begin() + o);
      if (rstd) (*rstd)[i * (H + K) + r] = rs[0];
    }
  return out;
}

void qk_norm_backward_ref(const Vec& dout, const Vec& qkv, int64_t rows, int64_t H, int64_t K,
                          int64_t hd, const Vec& wq, const Vec& wk, double eps, Vec& dqkv, Vec& dwq,
                          Vec& dwk) {
  const int64_t W = (H + 2 * K) * hd;
  dqkv = dout;  // value heads pass through
  dwq.assign(size_t(hd), 0);
  dwk.assign(size_t(hd), 0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t r = 0; r < H + K; ++r) {
      const size_t o = size_t(i * W + r * hd);
      Vec x(qkv.begin() + o, qkv.begin() + o + hd), dy(dout.begin() + o, dout.begin() + o + hd);
      Vec dx, dw;
      rmsnorm_backward_ref(dy, x, r < H ? wq : wk, 1, hd, eps, dx, dw);
      std::copy(dx.begin(), dx.end(), dqkv.begin() + o);
      Vec& acc = r < H ? dwq : dwk;
      for (int64_t j = 0; j < hd; ++j) acc[j] += dw[j];
    }
}

void run_qk_norm_case(int64_t B, int64_t T, int H, int K, int64_t hd, bool finite_diff,
                      std::mt19937& rng) {
  const std::string what = "qk_norm B " + std::to_string(B) + " T " + std::to_string(T) + " H " +
                           std::to_string(H) + " K " + std::to_string(K) + " hd " +
                           std::to_string(hd);
  const float eps = 1e-6f;
  const int64_t W = (H + 2 * K) * hd, rows = B * T;
  Tensor qkv = randn({B, T, W}, rng, 1.5f), wq = randn({hd}, rng), wk = randn({hd}, rng);
  Tensor out = filled({B, T, W}, kNaN), rstd = filled({rows, H + K}, kNaN);
  be().qk_norm_forward(qkv, H, K, wq, wk, eps, out, rstd);
  const Vec vqkv = vec(qkv), vwq = vec(wq), vwk = vec(wk);
  Vec rrstd;
  expect_close(out, qk_norm_ref(vqkv, rows, H, K, hd, vwq, vwk, eps, &rrstd), what + " out");
  expect_close(rstd, rrstd, what + " rstd");
  // Value heads are copied exactly.
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t c = (H + K) * hd; c < W; ++c)
      ASSERT_EQ(out.data<float>()[i * W + c], qkv.data<float>()[i * W + c]) << what;

  Tensor dout = randn({B, T, W}, rng);
  Tensor dqkv = filled({B, T, W}, kNaN);  // overwritten
  Tensor dwq0 = randn({hd}, rng), dwq = dwq0.clone(), dwk0 = randn({hd}, rng), dwk = dwk0.clone();
  be().qk_norm_backward(dout, qkv, H, K, wq, wk, rstd, dqkv, dwq, dwk);
  const Vec vd = vec(dout);
  Vec gx, gwq, gwk;
  if (finite_diff) {
    auto loss = [&](const Vec& x, const Vec& q, const Vec& k) {
      return dot(vd, qk_norm_ref(x, rows, H, K, hd, q, k, eps));
    };
    gx = numeric_grad([&](const Vec& v) { return loss(v, vwq, vwk); }, vqkv);
    gwq = numeric_grad([&](const Vec& v) { return loss(vqkv, v, vwk); }, vwq);
    gwk = numeric_grad([&](const Vec& v) { return loss(vqkv, vwq, v); }, vwk);
    Vec ax, aq, ak;  // the analytic reference agrees
    qk_norm_backward_ref(vd, vqkv, rows, H, K, hd, vwq, vwk, eps, ax, aq, ak);
    expect_close(ax, gx, what + " qk_norm_backward_ref dqkv", 1e-6, 1e-6);
    expect_close(aq, gwq, what + " qk_norm_backward_ref dwq", 1e-6, 1e-6);
    expect_close(ak, gwk, what + " qk_norm_backward_ref dwk", 1e-6, 1e-6);
  } else {
    qk_norm_backward_ref(vd, vqkv, rows, H, K, hd, vwq, vwk, eps, gx, gwq, gwk);
  }
  expect_close(dqkv, gx, what + " dqkv", 1e-5, 2e-5);
  expect_close(sub(vec(dwq), vec(dwq0)), gwq, what + " dwq (accumulated)", 1e-5, 2e-5);
  expect_close(sub(vec(dwk), vec(dwk0)), gwk, what + " dwk (accumulated)", 1e-5, 2e-5);

  // dqkv may alias dout: the same result in place.
  Tensor inplace = dout.clone(), dwq2 = dwq0.clone(), dwk2 = dwk0.clone();
  be().qk_norm_backward(inplace, qkv, H, K, wq, wk, rstd, inplace, dwq2, dwk2);
  EXPECT_EQ(vec(inplace), vec(dqkv)) << what;
  EXPECT_EQ(vec(dwq2), vec(dwq)) << what;
  EXPECT_EQ(vec(dwk2), vec(dwk)) << what;
}

TEST(CpuOps, QkNormForwardBackwardFiniteDifferences) {
  std::mt19937 rng(44);
  run_qk_norm_case(2, 3, 4, 2, 6, true, rng);  // GQA
  run_qk_norm_case(1, 2, 3, 3, 4, true, rng);  // MHA
  run_qk_norm_case(2, 2, 4, 1, 8, true, rng);  // one kv head
  run_qk_norm_case(1, 1, 1, 1, 2, true, rng);  // the smallest
}

TEST(CpuOps, QkNormLargeParallel) {
  std::mt19937 rng(45);
  run_qk_norm_case(4, 40, 4, 2, 64, false, rng);  // rows * width above the parallel threshold
}

TEST(CpuOps, QkNormRejectsBadShapes) {
  const char* f = "qk_norm_forward";
  const char* b = "qk_norm_backward";
  // H 4, K 2, hd 3: W = 24.
  Tensor qkv = Tensor::zeros({2, 3, 24}), wq = Tensor::zeros({3}), wk = Tensor::zeros({3});
  Tensor out = Tensor::zeros({2, 3, 24}), rstd = Tensor::zeros({6, 6});
  be().qk_norm_forward(qkv, 4, 2, wq, wk, 1e-6f, out, rstd);  // valid
  expect_op_error([&] { be().qk_norm_forward(qkv, 4, 3, wq, wk, 1e-6f, out, rstd); }, f,
                  "n_kv_head");  // 3 does not divide 4
  expect_op_error([&] { be().qk_norm_forward(qkv, 4, 0, wq, wk, 1e-6f, out, rstd); }, f);
  expect_op_error([&] { be().qk_norm_forward(qkv, 0, 0, wq, wk, 1e-6f, out, rstd); }, f);
  expect_op_error([&] { be().qk_norm_forward(qkv, 5, 5, wq, wk, 1e-6f, out, rstd); }, f, "qkv");
  Tensor w4 = Tensor::zeros({4}), rstd5 = Tensor::zeros({6, 5}), out2 = Tensor::zeros({2, 3, 23});
  expect_op_error([&] { be().qk_norm_forward(qkv, 4, 2, w4, wk, 1e-6f, out, rstd); }, f, "wq");
  expect_op_error([&] { be().qk_norm_forward(qkv, 4, 2, wq, w4, 1e-6f, out, rstd); }, f, "wk");
  expect_op_error([&] { be().qk_norm_forward(qkv, 4, 2, wq, wk, 1e-6f, out, rstd5); }, f, "rstd");
  expect_op_error([&] { be().qk_norm_forward(qkv, 4, 2, wq, wk, 1e-6f, out2, rstd); }, f, "out");
  expect_op_error([&] { be().qk_norm_forward(qkv, 4, 2, wq, wk, 1e-6f, qkv, rstd); }, f, "share");
  Tensor qkv2d = Tensor::zeros({6, 24}), qkvi = Tensor::zeros({2, 3, 24}, DType::kI32);
  expect_op_error([&] { be().qk_norm_forward(qkv2d, 4, 2, wq, wk, 1e-6f, out, rstd); }, f, "qkv");
  expect_op_error([&] { be().qk_norm_forward(qkvi, 4, 2, wq, wk, 1e-6f, out, rstd); }, f, "f32");
  Tensor dqkv = Tensor::zeros({2, 3, 24}), dwq = Tensor::zeros({3}), dwk = Tensor::zeros({3});
  be().qk_norm_backward(out, qkv, 4, 2, wq, wk, rstd, dqkv, dwq, dwk);  // valid
  expect_op_error([&] { be().qk_norm_backward(out, qkv, 4, 2, wq, wk, rstd, out2, dwq, dwk); }, b,
                  "dqkv");
  expect_op_error([&] { be().qk_norm_backward(out2, qkv, 4, 2, wq, wk, rstd, dqkv, dwq, dwk); }, b,
                  "dout");
  expect_op_error([&] { be().qk_norm_backward(out, qkv, 4, 2, wq, wk, rstd, dqkv, w4, dwk); }, b,
                  "dwq");
  expect_op_error([&] { be().qk_norm_backward(out, qkv, 4, 2, wq, wk, rstd, dqkv, dwq, w4); }, b,
                  "dwk");
  expect_op_error([&] { be().qk_norm_backward(out, qkv, 4, 2, wq, wk, rstd5, dqkv, dwq, dwk); }, b,
                  "rstd");
  // dqkv may be dout itself, but not partly overlap it.
  Tensor big = Tensor::zeros({2 * 144 + 1});
  Tensor d_a = big.flat_view(0, {2, 3, 24}), d_b = big.flat_view(1, {2, 3, 24});
  expect_op_error([&] { be().qk_norm_backward(d_a, qkv, 4, 2, wq, wk, rstd, d_b, dwq, dwk); }, b,
                  "share memory");
}

// ---- RoPE ----

// x (B, T, G * hd): the first n_rot heads rotated by +angle (sign 1) or -angle (sign -1).
Vec rope_ref(const Vec& x, int64_t B, int64_t T, int64_t G, int64_t n_rot, int64_t hd,
             const Vec& cos, const Vec& sin, double sign) {
  Vec y = x;
  const int64_t half = hd / 2;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t r = 0; r < n_rot; ++r)
        for (int64_t i = 0; i < half; ++i) {
          const size_t o = size_t(((b * T + t) * G + r) * hd + i);
          const double c = cos[t * half + i], s = sign * sin[t * half + i];
          y[o] = x[o] * c - x[o + half] * s;
          y[o + half] = x[o + half] * c + x[o] * s;
        }
  return y;
}

// Tables as a model builds them: angle t * theta^(-2i / hd), rows 0..tmax-1.
void rope_tables(int64_t tmax, int64_t hd, Tensor& cos, Tensor& sin) {
  const int64_t half = hd / 2;
  cos = Tensor::empty({tmax, half});
  sin = Tensor::empty({tmax, half});
  for (int64_t t = 0; t < tmax; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double a = double(t) * std::pow(10000.0, -2.0 * double(i) / double(hd));
      cos.data<float>()[t * half + i] = float(std::cos(a));
      sin.data<float>()[t * half + i] = float(std::sin(a));
    }
}

void run_rope_case(int64_t B, int64_t T, int G, int n_rot, int64_t hd, int64_t tmax,
                   std::mt19937& rng) {
  const std::string what = "rope B " + std::to_string(B) + " T " + std::to_string(T) + " G " +
                           std::to_string(G) + " n_rot " + std::to_string(n_rot) + " hd " +
                           std::to_string(hd);
  Tensor cos, sin;
  rope_tables(tmax, hd, cos, sin);
  const Vec vc = vec(cos), vs = vec(sin);
  Tensor x0 = randn({B, T, G * hd}, rng), x = x0.clone();
  be().rope_forward(x, G, n_rot, cos, sin);
  const Vec vx0 = vec(x0);
  expect_close(x, rope_ref(vx0, B, T, G, n_rot, hd, vc, vs, 1.0), what + " forward", 1e-6, 1e-6);
  // Heads from n_rot on are untouched.
  for (int64_t bt = 0; bt < B * T; ++bt)
    for (int64_t c = n_rot * hd; c < G * hd; ++c)
      ASSERT_EQ(x.data<float>()[bt * G * hd + c], x0.data<float>()[bt * G * hd + c]) << what;

  // The backward is the gradient of the forward: finite differences of sum(dy * rope(x)).
  Tensor dy = randn({B, T, G * hd}, rng), dx = dy.clone();
  be().rope_backward(dx, G, n_rot, cos, sin);
  const Vec vdy = vec(dy);
  const Vec want = rope_ref(vdy, B, T, G, n_rot, hd, vc, vs, -1.0);
  expect_close(dx, want, what + " backward", 1e-6, 1e-6);
  if (B * T * G * hd <= 2000) {
    Vec fd = numeric_grad(
        [&](const Vec& v) { return dot(vdy, rope_ref(v, B, T, G, n_rot, hd, vc, vs, 1.0)); }, vx0);
    expect_close(fd, want, what + " finite differences vs transposed rotation", 1e-6, 1e-7);
  }
  // rope_backward(rope_forward(x)) == x: the rotation is orthogonal.
  be().rope_backward(x, G, n_rot, cos, sin);
  expect_close(x, vx0, what + " round trip", 1e-5, 1e-6);
}

TEST(CpuOps, RopeForwardBackward) {
  std::mt19937 rng(46);
  run_rope_case(2, 5, 8, 6, 8, 5, rng);   // fused qkv: H 4, K 2 -> G 8, n_rot 6
  run_rope_case(1, 3, 3, 3, 4, 10, rng);  // all heads rotated, Tmax > T
  run_rope_case(2, 4, 3, 0, 6, 4, rng);   // nothing rotated
  run_rope_case(1, 1, 2, 1, 2, 1, rng);   // one position, hd 2
}

TEST(CpuOps, RopeLargeParallel) {
  std::mt19937 rng(47);
  run_rope_case(4, 128, 8, 6, 64, 256, rng);  // Llama-like: the parallel path
}

TEST(CpuOps, RopeRejectsBadShapes) {
  for (const char* op : {"rope_forward", "rope_backward"}) {
    const bool fwd = std::string(op) == "rope_forward";
    auto call = [&](Tensor& x, int n_heads, int n_rot, const Tensor& c, const Tensor& s) {
      if (fwd) {
        be().rope_forward(x, n_heads, n_rot, c, s);
      } else {
        be().rope_backward(x, n_heads, n_rot, c, s);
      }
    };
    Tensor x = Tensor::zeros({2, 5, 24}), cos = Tensor::zeros({8, 3}), sin = Tensor::zeros({8, 3});
    call(x, 4, 3, cos, sin);                                           // valid: 4 heads of 6
    expect_op_error([&] { call(x, 8, 3, cos, sin); }, op, "even");     // heads of 3
    expect_op_error([&] { call(x, 5, 3, cos, sin); }, op, "n_heads");  // 5 does not divide 24
    expect_op_error([&] { call(x, 0, 0, cos, sin); }, op, "n_heads");
    expect_op_error([&] { call(x, 4, 5, cos, sin); }, op, "n_rot");
    expect_op_error([&] { call(x, 4, -1, cos, sin); }, op, "n_rot");
    Tensor short_cos = Tensor::zeros({4, 3}), wide_cos = Tensor::zeros({8, 6});
    expect_op_error([&] { call(x, 4, 3, short_cos, sin); }, op, "cos");  // Tmax < T
    expect_op_error([&] { call(x, 4, 3, wide_cos, sin); }, op, "cos");
    expect_op_error([&] { call(x, 4, 3, cos, short_cos); }, op, "sin");
    Tensor x2d = Tensor::zeros({10, 24}), xi = Tensor::zeros({2, 5, 24}, DType::kI32);
    expect_op_error([&] { call(x2d, 4, 3, cos, sin); }, op);
    expect_op_error([&] { call(xi, 4, 3, cos, sin); }, op, "f32");
    Tensor cos_i = Tensor::zeros({8, 3}, DType::kI32);
    expect_op_error([&] { call(x, 4, 3, cos_i, sin); }, op, "cos");
  }
}

// ---- grouped-query attention ----

// qkv (B, T, (H + 2K) hd) -> out (B, T, H hd); att (B, H, T, T) with zeros above the diagonal.
Vec gqa_ref(const Vec& qkv, int64_t B, int64_t T, int64_t H, int64_t K, int64_t hd,
            Vec* att = nullptr) {
  const int64_t W = (H + 2 * K) * hd, C = H * hd, R = H / K;
  const double scale = 1.0 / std::sqrt(double(hd));
  Vec out(size_t(B * T * C), 0.0);
  if (att) att->assign(size_t(B * H * T * T), 0.0);
  Vec p(static_cast<size_t>(T));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / R;
      for (int64_t i = 0; i < T; ++i) {
        const double* q = qkv.data() + (b * T + i) * W + h * hd;
        double mx = -1e300;
        for (int64_t j = 0; j <= i; ++j) {
          const double* k = qkv.data() + (b * T + j) * W + (H + g) * hd;
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
          const double* v = qkv.data() + (b * T + j) * W + (H + K + g) * hd;
          for (int64_t d = 0; d < hd; ++d) out[(b * T + i) * C + h * hd + d] += p[j] * v[d];
        }
      }
    }
  return out;
}

// Analytic backward in double: dqkv (B, T, W), kv heads summed over their query heads.
Vec gqa_backward_ref(const Vec& dout, const Vec& qkv, int64_t B, int64_t T, int64_t H, int64_t K,
                     int64_t hd) {
  const int64_t W = (H + 2 * K) * hd, C = H * hd, R = H / K;
  const double scale = 1.0 / std::sqrt(double(hd));
  Vec att;
  gqa_ref(qkv, B, T, H, K, hd, &att);
  Vec dqkv(qkv.size(), 0.0), dp(static_cast<size_t>(T));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / R;
      auto at = [&](int64_t row, int64_t col) { return size_t((b * T + row) * W + col); };
      for (int64_t i = 0; i < T; ++i) {
        const double* p = att.data() + ((b * H + h) * T + i) * T;
        const double* dO = dout.data() + (b * T + i) * C + h * hd;
        double rowdot = 0;
        for (int64_t j = 0; j <= i; ++j) {
          double s = 0;
          for (int64_t d = 0; d < hd; ++d) s += dO[d] * qkv[at(j, (H + K + g) * hd + d)];
          dp[j] = s;
          rowdot += p[j] * s;
        }
        for (int64_t j = 0; j <= i; ++j) {
          const double ds = p[j] * (dp[j] - rowdot) * scale;
          for (int64_t d = 0; d < hd; ++d) {
            dqkv[at(i, h * hd + d)] += ds * qkv[at(j, (H + g) * hd + d)];  // dQ
            dqkv[at(j, (H + g) * hd + d)] += ds * qkv[at(i, h * hd + d)];  // dK
            dqkv[at(j, (H + K + g) * hd + d)] += p[j] * dO[d];             // dV
          }
        }
      }
    }
  return dqkv;
}

struct GqaCase {
  int64_t B, T;
  int H, K;
  int64_t hd;
  bool finite_diff;
};

void run_gqa_case(const GqaCase& c, std::mt19937& rng) {
  const auto [B, T, H, K, hd, finite_diff] = c;
  const std::string what = "gqa B " + std::to_string(B) + " T " + std::to_string(T) + " H " +
                           std::to_string(H) + " K " + std::to_string(K) + " hd " +
                           std::to_string(hd);
  const int64_t W = (H + 2 * K) * hd, C = H * hd;
  Tensor qkv = randn({B, T, W}, rng);
  Tensor out = filled({B, T, C}, kNaN), att = filled({B, H, T, T}, kNaN);
  be().attention_forward(qkv, H, K, out, att);
  const Vec vqkv = vec(qkv);
  Vec ratt;
  expect_close(out, gqa_ref(vqkv, B, T, H, K, hd, &ratt), what + " out");
  Vec got_att = vec(att), lower_got, lower_want;
  for (int64_t bh = 0; bh < B * H; ++bh)
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = 0; j <= i; ++j) {
        lower_got.push_back(got_att[size_t((bh * T + i) * T + j)]);
        lower_want.push_back(ratt[size_t((bh * T + i) * T + j)]);
      }
  expect_close(lower_got, lower_want, what + " att");

  float* pa = att.data<float>();  // the backward must not read above the diagonal
  for (int64_t bh = 0; bh < B * H; ++bh)
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = i + 1; j < T; ++j) pa[(bh * T + i) * T + j] = kNaN;
  Tensor dout = randn({B, T, C}, rng);
  Tensor dqkv = filled({B, T, W}, kNaN);  // overwritten
  be().attention_backward(dout, qkv, att, H, K, dqkv);
  const Vec vdout = vec(dout);
  const Vec want = gqa_backward_ref(vdout, vqkv, B, T, H, K, hd);
  if (finite_diff) {
    Vec fd =
        numeric_grad([&](const Vec& v) { return dot(vdout, gqa_ref(v, B, T, H, K, hd)); }, vqkv);
    expect_close(want, fd, what + " gqa_backward_ref vs finite differences", 1e-6, 1e-6);
  }
  expect_close(dqkv, want, what + " dqkv", 1e-5, 2e-5);
  // Called again on the same (now valid) dqkv: still overwritten, not accumulated.
  be().attention_backward(dout, qkv, att, H, K, dqkv);
  expect_close(dqkv, want, what + " dqkv second call", 1e-5, 2e-5);
}

TEST(CpuOps, GqaAttentionFiniteDifferences) {
  std::mt19937 rng(48);
  run_gqa_case({2, 7, 4, 2, 4, true}, rng);   // K = H/2
  run_gqa_case({1, 6, 3, 1, 4, true}, rng);   // K = 1 (multi-query)
  run_gqa_case({2, 5, 2, 2, 3, true}, rng);   // K = H
  run_gqa_case({3, 1, 4, 2, 4, true}, rng);   // T = 1
  run_gqa_case({1, 19, 4, 2, 2, true}, rng);  // two query blocks, ragged
}

TEST(CpuOps, GqaAttentionMultipleBlocks) {
  std::mt19937 rng(49);
  run_gqa_case({2, 37, 4, 1, 16, false}, rng);  // ragged T, K = 1
  run_gqa_case({1, 70, 6, 3, 8, false}, rng);   // ragged T, K = H/2
  run_gqa_case({2, 48, 8, 2, 16, false}, rng);  // T a multiple of the block, group of 4
  run_gqa_case({2, 33, 4, 4, 8, false}, rng);   // K = H
  run_gqa_case({8, 1, 4, 2, 64, false}, rng);   // T = 1, benchmark hd
}

TEST(CpuOps, GqaAttentionBenchmarkShape) {
  std::mt19937 rng(50);
  run_gqa_case({2, 128, 4, 2, 64, false}, rng);  // the Llama benchmark's heads, fewer batches
}

// K = H is the multi-head path: the MHA overloads are the same call, and agree with the MHA
// reference of the GPT-2 tests above. And GQA equals MHA with each kv head repeated for its
// group (repeat_kv), with kv gradients summed over the group.
TEST(CpuOps, GqaAttentionMatchesMhaWithRepeatedKv) {
  std::mt19937 rng(51);
  const int64_t B = 2, T = 29, hd = 8;
  const int H = 4, K = 2, R = H / K;
  const int64_t W = (H + 2 * K) * hd, C = H * hd;
  Tensor qkv = randn({B, T, W}, rng);
  Tensor mha = Tensor::empty({B, T, 3 * C});  // [q | k repeated | v repeated]
  for (int64_t bt = 0; bt < B * T; ++bt)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t d = 0; d < hd; ++d) {
        const float* src = qkv.data<float>() + bt * W;
        float* dst = mha.data<float>() + bt * 3 * C;
        dst[h * hd + d] = src[h * hd + d];
        dst[C + h * hd + d] = src[(H + h / R) * hd + d];
        dst[2 * C + h * hd + d] = src[(H + K + h / R) * hd + d];
      }
  Tensor out_g = Tensor::empty({B, T, C}), att_g = Tensor::zeros({B, H, T, T});
  Tensor out_m = Tensor::empty({B, T, C}), att_m = Tensor::zeros({B, H, T, T});
  Tensor out_m5 = Tensor::empty({B, T, C}), att_m5 = Tensor::zeros({B, H, T, T});
  be().attention_forward(qkv, H, K, out_g, att_g);
  be().attention_forward(mha, H, out_m, att_m);       // the MHA overload
  be().attention_forward(mha, H, H, out_m5, att_m5);  // K = H explicitly
  EXPECT_EQ(vec(out_m5), vec(out_m));
  EXPECT_EQ(vec(att_m5), vec(att_m));
  expect_close(out_m, attention_ref(vec(mha), B, T, C, H), "MHA path vs MHA reference");
  expect_close(out_g, vec(out_m), "GQA vs MHA with repeated kv", 1e-6, 1e-7);

  Tensor dout = randn({B, T, C}, rng);
  Tensor dg = Tensor::empty({B, T, W}), dm = Tensor::empty({B, T, 3 * C});
  Tensor dm5 = Tensor::empty({B, T, 3 * C});
  be().attention_backward(dout, qkv, att_g, H, K, dg);
  be().attention_backward(dout, mha, att_m, H, dm);
  be().attention_backward(dout, mha, att_m, H, H, dm5);
  EXPECT_EQ(vec(dm5), vec(dm));
  Vec want(size_t(B * T * W), 0.0);
  for (int64_t bt = 0; bt < B * T; ++bt)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t d = 0; d < hd; ++d) {
        const float* src = dm.data<float>() + bt * 3 * C;
        double* dst = want.data() + bt * W;
        dst[h * hd + d] = src[h * hd + d];
        dst[(H + h / R) * hd + d] += src[C + h * hd + d];
        dst[(H + K + h / R) * hd + d] += src[2 * C + h * hd + d];
      }
  expect_close(dg, want, "GQA dqkv vs MHA with repeated kv, summed", 1e-5, 1e-6);
}

TEST(CpuOps, GqaAttentionRejectsBadShapes) {
  const char* f = "attention_forward";
  const char* b = "attention_backward";
  // H 4, K 2, hd 3: W = 24, out (2, 5, 12).
  Tensor qkv = Tensor::zeros({2, 5, 24}), out = Tensor::zeros({2, 5, 12});
  Tensor att = Tensor::zeros({2, 4, 5, 5});
  be().attention_forward(qkv, 4, 2, out, att);  // valid
  expect_op_error([&] { be().attention_forward(qkv, 4, 3, out, att); }, f, "n_kv_head");
  expect_op_error([&] { be().attention_forward(qkv, 4, 0, out, att); }, f, "n_kv_head");
  expect_op_error([&] { be().attention_forward(qkv, 2, 4, out, att); }, f, "n_kv_head");
  expect_op_error([&] { be().attention_forward(qkv, 0, 1, out, att); }, f);
  expect_op_error([&] { be().attention_forward(qkv, 5, 1, out, att); }, f, "qkv");  // 7 !| 24
  Tensor out_mha = Tensor::zeros({2, 5, 8});  // MHA's C = 24 / 3 is not GQA's H hd
  expect_op_error([&] { be().attention_forward(qkv, 4, 2, out_mha, att); }, f, "out");
  Tensor att_k = Tensor::zeros({2, 2, 5, 5});  // att has a row per query head, not kv head
  expect_op_error([&] { be().attention_forward(qkv, 4, 2, out, att_k); }, f, "att");
  Tensor qkv_i = Tensor::zeros({2, 5, 24}, DType::kI32), qkv2 = Tensor::zeros({10, 24});
  expect_op_error([&] { be().attention_forward(qkv_i, 4, 2, out, att); }, f, "f32");
  expect_op_error([&] { be().attention_forward(qkv2, 4, 2, out, att); }, f, "qkv");
  Tensor dqkv = Tensor::zeros({2, 5, 24});
  be().attention_backward(out, qkv, att, 4, 2, dqkv);  // valid
  expect_op_error([&] { be().attention_backward(out, qkv, att, 4, 3, dqkv); }, b, "n_kv_head");
  expect_op_error([&] { be().attention_backward(out_mha, qkv, att, 4, 2, dqkv); }, b, "dout");
  expect_op_error([&] { be().attention_backward(out, qkv, att_k, 4, 2, dqkv); }, b, "att");
  Tensor dqkv_bad = Tensor::zeros({2, 5, 12});
  expect_op_error([&] { be().attention_backward(out, qkv, att, 4, 2, dqkv_bad); }, b, "dqkv");
  expect_op_error([&] { be().attention_backward(out, qkv, att, 4, 2, qkv); }, b, "share memory");
}

// ---- the defaults of an op family a backend does not implement ----

class NoOps : public Backend {
 public:
  Device device() const override { return Device::cpu(); }
  const char* name() const override { return "noops"; }
};

void expect_missing(const std::function<void()>& f, const std::string& op) {
  try {
    f();
    ADD_FAILURE() << op << ": no throw";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "backend noops has no op " + op);
  }
}

TEST(CpuOps, MissingOpsNameTheBackendAndOp) {
  NoOps no;
  Tensor t = Tensor::zeros({2, 4}), r = Tensor::zeros({2}), u;
  Tensor t3 = Tensor::zeros({1, 2, 4}), a4 = Tensor::zeros({1, 1, 2, 2});
  expect_missing([&] { no.rmsnorm_forward(t, r, 1e-5f, t, r); }, "rmsnorm_forward");
  expect_missing([&] { no.rmsnorm_backward(t, t, r, r, t, r); }, "rmsnorm_backward");
  expect_missing([&] { no.swiglu_forward(t, t); }, "swiglu_forward");
  expect_missing([&] { no.swiglu_backward(t, t, t); }, "swiglu_backward");
  expect_missing([&] { no.qk_norm_forward(t3, 1, 1, r, r, 1e-6f, t3, r); }, "qk_norm_forward");
  expect_missing([&] { no.qk_norm_backward(t3, t3, 1, 1, r, r, r, t3, r, r); }, "qk_norm_backward");
  expect_missing([&] { no.rope_forward(t3, 1, 1, t, t); }, "rope_forward");
  expect_missing([&] { no.rope_backward(t3, 1, 1, t, t); }, "rope_backward");
  expect_missing([&] { no.attention_forward(t3, 1, 1, t3, a4); }, "attention_forward");
  expect_missing([&] { no.attention_forward(t3, 1, t3, a4); }, "attention_forward");  // MHA
  expect_missing([&] { no.attention_backward(t3, t3, a4, 1, 1, t3); }, "attention_backward");
  expect_missing([&] { no.linear_forward(t, t, u, t, WeightLayout::kOutIn); }, "linear_forward");
  expect_missing([&] { no.linear_backward(t, t, t, t, t, u); }, "linear_backward");
  expect_missing([&] { no.matmul(t, t, t); }, "matmul");
  EXPECT_EQ(no.attention_work_fraction(128), 1.0);  // the default: the full square
}

}  // namespace
}  // namespace peng
