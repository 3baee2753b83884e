// Causal grouped-query self-attention, forward and backward, with sgemm on strided slices.
//
// Layout: qkv (B, T, W) with W = (H + 2K) * hd = [q heads | k heads | v heads] (core/backend.h):
// query head h at columns h*hd .. h*hd+hd, key head g at (H + g)*hd, value head g at
// (H + K + g)*hd; query head h attends with kv head g = h / (H / K). K = H is multi-head
// attention (GPT-2's (B, T, 3C), C = H*hd). For one (b, head) the Q, K, V are (T, hd)
// matrices with leading dimension W, read in place (no permute or repeat_kv copies); the
// head's output rows are written with leading dimension H*hd straight into out (B, T, H*hd).
// att (B, H, T, T) holds the probabilities P = softmax(Q K^T / sqrt(hd) + causal mask).
//
// Causality: the query rows are processed in blocks I = [i0, i1) of kBlock rows, and each
// block only multiplies against the keys [0, i1) it can see; the key-side products of the
// backward go by key blocks J = [j0, j1) against the queries [j0, T) that see them. This
// skips close to half of the T^2 work. In the forward, entries j in (i, i1) of att are
// written as 0 so that P[I, 0:i1] goes straight into the next GEMM; entries j >= i1 are left
// untouched (unspecified). The backward never reads att above the diagonal.
//
// Forward, per (b, h) and query block I (the (b, h) pairs spread over OpenMP threads):
//   S[I, 0:i1] = scale * Q[I] K[0:i1]^T;  P = causal softmax of the rows (fast_exp);
//   O[I] = P[I, 0:i1] V[0:i1]
// Backward, per (b, g) pair of a kv head (spread over OpenMP threads), for each query head h
// of g's group in turn, into per-thread (T, T) scratch Pm (att masked below the diagonal)
// and dS:
//   query blocks I:  dP = dO[I] V[0:i1]^T;  dS = Pm * (dP - rowsum(Pm * dP)) * scale;
//                    dQ[I] = dS[I, 0:i1] K[0:i1]
//   key blocks J:    dV[J] (+)= Pm[j0:T, J]^T dO[j0:T];  dK[J] (+)= dS[j0:T, J]^T Q[j0:T]
// dK and dV of a kv head sum over its group's query heads: the first head of the group
// writes them with beta = 0, the others add with beta = 1. One thread owns all of a kv
// head's group, so there are no races, and dqkv is overwritten, never accumulated across
// calls. Each sgemm inside runs single-threaded.
// The 16-row blocks measured fastest at T = 128, hd = 64 (OpenBLAS's small-matrix kernels).
#include <omp.h>

#include <cblas.h>
#include <algorithm>
#include <vector>

#include "peng/core/cpu/cpu_backend.h"

namespace peng {
namespace {

constexpr int64_t kBlock = 16;  // query rows (and key columns) per block

// Checks qkv and the head counts (cpu::check_qkv) and the BLAS int range.
cpu::QkvDims attention_dims(const char* op, const Tensor& qkv, int n_head, int n_kv_head) {
  const cpu::QkvDims d = cpu::check_qkv(op, qkv, n_head, n_kv_head);
  PENG_CHECK(d.width() <= INT32_MAX && d.t <= INT32_MAX, op, ": qkv ", qkv.str(),
             " exceeds the BLAS int range");
  return d;
}

void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb), beta,
              c, int(ldc));
}

}  // namespace

void CpuBackend::attention_forward(const Tensor& qkv, int n_head, int n_kv_head, Tensor& out,
                                   Tensor& att) {
  const char* op = "attention_forward";
  const cpu::QkvDims d = attention_dims(op, qkv, n_head, n_kv_head);
  const int64_t C = d.h * d.hd;  // out's channels
  cpu::check_shape(op, "out", out, {d.b, d.t, C});
  cpu::check_shape(op, "att", att, {d.b, d.h, d.t, d.t});
  cpu::check_no_overlap(op, "out", out, "qkv", qkv);
  cpu::check_no_overlap(op, "att", att, "qkv", qkv);
  cpu::check_no_overlap(op, "att", att, "out", out);
  if (d.b == 0 || d.t == 0 || d.hd == 0) return;

  const float* pqkv = qkv.data<const float>();
  float* pout = out.data<float>();
  float* patt = att.data<float>();
  const int64_t T = d.t, hd = d.hd, W = d.width(), H = d.h, group = d.h / d.k;
  const float scale = 1.0f / std::sqrt(float(hd));

#pragma omp parallel for schedule(static)
  for (int64_t bh = 0; bh < d.b * H; ++bh) {
    const int64_t b = bh / H, h = bh % H, g = h / group;
    const float* qb = pqkv + b * T * W;
    const float* q = qb + h * hd;              // (T, hd), ld W
    const float* k = qb + (H + g) * hd;        // (T, hd), ld W
    const float* v = qb + (H + d.k + g) * hd;  // (T, hd), ld W
    float* p = patt + bh * T * T;              // (T, T)
    float* o = pout + b * T * C + h * hd;      // (T, hd), ld C
    for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
      const int64_t i1 = std::min(T, i0 + kBlock), rows = i1 - i0;
      // S[I, 0:i1] = scale * Q[I] K[0:i1]^T
      gemm(CblasNoTrans, CblasTrans, rows, i1, hd, scale, q + i0 * W, W, k, W, 0.0f, p + i0 * T, T);
      for (int64_t i = i0; i < i1; ++i) {  // causal softmax of row i over j <= i
        float* row = p + i * T;
        const float mx = cpu::row_max(row, i + 1);
        const float inv = 1.0f / cpu::exp_and_sum(row, i + 1, i1, mx);  // zeros (i, i1)
#pragma omp simd
        for (int64_t j = 0; j <= i; ++j) row[j] *= inv;
      }
      // O[I] = P[I, 0:i1] V[0:i1]
      gemm(CblasNoTrans, CblasNoTrans, rows, hd, i1, 1.0f, p + i0 * T, T, v, W, 0.0f, o + i0 * C,
           C);
    }
  }
}

void CpuBackend::attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& att,
                                    int n_head, int n_kv_head, Tensor& dqkv) {
  const char* op = "attention_backward";
  const cpu::QkvDims d = attention_dims(op, qkv, n_head, n_kv_head);
  const int64_t C = d.h * d.hd;  // dout's channels
  cpu::check_shape(op, "dout", dout, {d.b, d.t, C});
  cpu::check_shape(op, "att", att, {d.b, d.h, d.t, d.t});
  cpu::check_shape(op, "dqkv", dqkv, qkv.shape());
  cpu::check_no_overlap(op, "dqkv", dqkv, "qkv", qkv);
  cpu::check_no_overlap(op, "dqkv", dqkv, "dout", dout);
  cpu::check_no_overlap(op, "dqkv", dqkv, "att", att);
  if (d.b == 0 || d.t == 0 || d.hd == 0) return;

  const float* pqkv = qkv.data<const float>();
  const float* pdout = dout.data<const float>();
  const float* patt = att.data<const float>();
  float* pdqkv = dqkv.data<float>();
  const int64_t T = d.t, hd = d.hd, W = d.width(), H = d.h, K = d.k, group = d.h / d.k;
  const float scale = 1.0f / std::sqrt(float(hd));

#pragma omp parallel
  {
    // Per-thread scratch, (T, T) each: P with the causal mask applied, and dP / dS. Kept
    // across calls (OpenMP's threads persist), so no allocation or page faults per call.
    thread_local std::vector<float> scratch;
    if (scratch.size() < size_t(2 * T * T)) scratch.resize(size_t(2 * T * T));
    float* pm = scratch.data();
    float* ds = pm + T * T;
#pragma omp for schedule(static)
    for (int64_t bg = 0; bg < d.b * K; ++bg) {
      const int64_t b = bg / K, g = bg % K;
      const float* qb = pqkv + b * T * W;
      const float* k = qb + (H + g) * hd;      // (T, hd), ld W
      const float* v = qb + (H + K + g) * hd;  // (T, hd), ld W
      float* dk = pdqkv + b * T * W + (H + g) * hd;
      float* dv = pdqkv + b * T * W + (H + K + g) * hd;
      for (int64_t h = g * group; h < (g + 1) * group; ++h) {
        const float beta = h == g * group ? 0.0f : 1.0f;   // dK, dV: the group's sum
        const float* q = qb + h * hd;                      // (T, hd), ld W
        const float* p = patt + (b * H + h) * T * T;       // (T, T)
        const float* dout_h = pdout + b * T * C + h * hd;  // (T, hd), ld C
        float* dq = pdqkv + b * T * W + h * hd;            // (T, hd), ld W
        // Query blocks: dS rows and dQ.
        for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
          const int64_t i1 = std::min(T, i0 + kBlock), rows = i1 - i0;
          // dP[I, 0:i1] = dO[I] V[0:i1]^T
          gemm(CblasNoTrans, CblasTrans, rows, i1, hd, 1.0f, dout_h + i0 * C, C, v, W, 0.0f,
               ds + i0 * T, T);
          for (int64_t i = i0; i < i1; ++i) {
            float* pr = pm + i * T;
            float* dr = ds + i * T;
            std::copy(p + i * T, p + i * T + i + 1, pr);  // P[i, 0..i]; the rest is masked
            std::fill(pr + i + 1, pr + T, 0.0f);
            // dS = P * (dP - rowsum(P * dP)) * scale over j <= i, 0 beyond
            const float dot = cpu::dot(pr, dr, i + 1);
#pragma omp simd
            for (int64_t j = 0; j <= i; ++j) dr[j] = pr[j] * (dr[j] - dot) * scale;
            std::fill(dr + i + 1, dr + T, 0.0f);
          }
          // dQ[I] = dS[I, 0:i1] K[0:i1]
          gemm(CblasNoTrans, CblasNoTrans, rows, hd, i1, 1.0f, ds + i0 * T, T, k, W, 0.0f,
               dq + i0 * W, W);
        }
        // Key blocks: only queries j0.. see keys J = [j0, j1).
        for (int64_t j0 = 0; j0 < T; j0 += kBlock) {
          const int64_t j1 = std::min(T, j0 + kBlock), cols = j1 - j0, n_q = T - j0;
          // dV[J] (+)= P[j0:T, J]^T dO[j0:T]
          gemm(CblasTrans, CblasNoTrans, cols, hd, n_q, 1.0f, pm + j0 * T + j0, T, dout_h + j0 * C,
               C, beta, dv + j0 * W, W);
          // dK[J] (+)= dS[j0:T, J]^T Q[j0:T]
          gemm(CblasTrans, CblasNoTrans, cols, hd, n_q, 1.0f, ds + j0 * T + j0, T, q + j0 * W, W,
               beta, dk + j0 * W, W);
        }
      }
    }
  }
}

// Query block I multiplies against keys [0, i1) (and key block J against queries [j0, T),
// the same count): sum over blocks of rows * i1, out of T^2.
double CpuBackend::attention_work_fraction(int64_t T) const {
  if (T <= 0) return 1.0;
  double products = 0;
  for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
    const int64_t i1 = std::min(T, i0 + kBlock);
    products += double(i1 - i0) * double(i1);
  }
  return products / (double(T) * double(T));
}

}  // namespace peng
