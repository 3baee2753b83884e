// Causal multi-head self-attention, forward and backward, with sgemm on strided slices.
//
// Layout: qkv (B, T, 3C) = [q | k | v], head h of q at columns h*hd .. h*hd+hd (hd = C / H),
// k at C + h*hd, v at 2C + h*hd. For one (b, h) the head's Q, K, V are (T, hd) matrices
// with leading dimension 3C, read in place (no permute copies); the head's output rows are
// written with leading dimension C straight into out (B, T, C). att (B, H, T, T) holds the
// probabilities P = softmax(Q K^T / sqrt(hd) + causal mask).
//
// Causality: the query rows are processed in blocks I = [i0, i1) of kBlock rows, and each
// block only multiplies against the keys [0, i1) it can see; the key-side products of the
// backward go by key blocks J = [j0, j1) against the queries [j0, T) that see them. This
// skips close to half of the T^2 work. In the forward, entries j in (i, i1) of att are
// written as 0 so that P[I, 0:i1] goes straight into the next GEMM; entries j >= i1 are left
// untouched (unspecified). The backward never reads att above the diagonal.
//
// Forward, per (b, h) and query block I:
//   S[I, 0:i1] = scale * Q[I] K[0:i1]^T;  P = causal softmax of the rows (fast_exp);
//   O[I] = P[I, 0:i1] V[0:i1]
// Backward, per (b, h), into per-thread (T, T) scratch Pm (att masked below the diagonal)
// and dS; every output is written once (dqkv is overwritten, never accumulated):
//   query blocks I:  dP = dO[I] V[0:i1]^T;  dS = Pm * (dP - rowsum(Pm * dP)) * scale;
//                    dQ[I] = dS[I, 0:i1] K[0:i1]
//   key blocks J:    dV[J] = Pm[j0:T, J]^T dO[j0:T];  dK[J] = dS[j0:T, J]^T Q[j0:T]
// The (b, h) pairs are spread over OpenMP threads; each sgemm inside runs single-threaded.
// The 16-row blocks measured fastest at T = 128, hd = 64 (OpenBLAS's small-matrix kernels).
#include <omp.h>

#include <cblas.h>
#include <algorithm>
#include <vector>

#include "core/cpu/cpu_backend.h"

namespace peng {
namespace {

constexpr int64_t kBlock = 16;  // query rows (and key columns) per block

struct AttnDims {
  int64_t b, t, c, h, hd;
};

AttnDims attention_dims(const char* op, const Tensor& qkv, int n_head) {
  cpu::check_tensor(op, "qkv", qkv);
  PENG_CHECK(qkv.ndim() == 3 && qkv.dim(2) % 3 == 0, op, ": qkv must be (B, T, 3C), got ",
             qkv.str());
  AttnDims d;
  d.b = qkv.dim(0);
  d.t = qkv.dim(1);
  d.c = qkv.dim(2) / 3;
  d.h = n_head;
  PENG_CHECK(n_head > 0 && d.c % n_head == 0, op, ": n_head ", n_head, " must divide C = ", d.c,
             " (qkv ", qkv.str(), ")");
  d.hd = d.c / n_head;
  PENG_CHECK(3 * d.c <= INT32_MAX && d.t <= INT32_MAX, op, ": qkv ", qkv.str(),
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
  PENG_CHECK(n_kv_head == n_head, "attention_forward: GQA not implemented yet");
  const char* op = "attention_forward";
  const AttnDims d = attention_dims(op, qkv, n_head);
  cpu::check_shape(op, "out", out, {d.b, d.t, d.c});
  cpu::check_shape(op, "att", att, {d.b, d.h, d.t, d.t});
  cpu::check_no_overlap(op, "out", out, "qkv", qkv);
  cpu::check_no_overlap(op, "att", att, "qkv", qkv);
  cpu::check_no_overlap(op, "att", att, "out", out);
  if (d.b == 0 || d.t == 0 || d.c == 0) return;

  const float* pqkv = qkv.data<const float>();
  float* pout = out.data<float>();
  float* patt = att.data<float>();
  const int64_t T = d.t, C = d.c, hd = d.hd, C3 = 3 * d.c;
  const float scale = 1.0f / std::sqrt(float(hd));

#pragma omp parallel for schedule(static)
  for (int64_t bh = 0; bh < d.b * d.h; ++bh) {
    const int64_t b = bh / d.h, h = bh % d.h;
    const float* q = pqkv + b * T * C3 + h * hd;  // (T, hd), ld 3C
    const float* k = q + C;                       // (T, hd), ld 3C
    const float* v = q + 2 * C;                   // (T, hd), ld 3C
    float* p = patt + bh * T * T;                 // (T, T)
    float* o = pout + b * T * C + h * hd;         // (T, hd), ld C
    for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
      const int64_t i1 = std::min(T, i0 + kBlock), rows = i1 - i0;
      // S[I, 0:i1] = scale * Q[I] K[0:i1]^T
      gemm(CblasNoTrans, CblasTrans, rows, i1, hd, scale, q + i0 * C3, C3, k, C3, 0.0f, p + i0 * T,
           T);
      for (int64_t i = i0; i < i1; ++i) {  // causal softmax of row i over j <= i
        float* row = p + i * T;
        const float mx = cpu::row_max(row, i + 1);
        const float inv = 1.0f / cpu::exp_and_sum(row, i + 1, i1, mx);  // zeros (i, i1)
#pragma omp simd
        for (int64_t j = 0; j <= i; ++j) row[j] *= inv;
      }
      // O[I] = P[I, 0:i1] V[0:i1]
      gemm(CblasNoTrans, CblasNoTrans, rows, hd, i1, 1.0f, p + i0 * T, T, v, C3, 0.0f, o + i0 * C,
           C);
    }
  }
}

void CpuBackend::attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& att,
                                    int n_head, int n_kv_head, Tensor& dqkv) {
  PENG_CHECK(n_kv_head == n_head, "attention_backward: GQA not implemented yet");
  const char* op = "attention_backward";
  const AttnDims d = attention_dims(op, qkv, n_head);
  cpu::check_shape(op, "dout", dout, {d.b, d.t, d.c});
  cpu::check_shape(op, "att", att, {d.b, d.h, d.t, d.t});
  cpu::check_shape(op, "dqkv", dqkv, qkv.shape());
  cpu::check_no_overlap(op, "dqkv", dqkv, "qkv", qkv);
  cpu::check_no_overlap(op, "dqkv", dqkv, "dout", dout);
  cpu::check_no_overlap(op, "dqkv", dqkv, "att", att);
  if (d.b == 0 || d.t == 0 || d.c == 0) return;

  const float* pqkv = qkv.data<const float>();
  const float* pdout = dout.data<const float>();
  const float* patt = att.data<const float>();
  float* pdqkv = dqkv.data<float>();
  const int64_t T = d.t, C = d.c, hd = d.hd, C3 = 3 * d.c;
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
    for (int64_t bh = 0; bh < d.b * d.h; ++bh) {
      const int64_t b = bh / d.h, h = bh % d.h;
      const float* q = pqkv + b * T * C3 + h * hd;       // (T, hd), ld 3C
      const float* k = q + C;                            // (T, hd), ld 3C
      const float* v = q + 2 * C;                        // (T, hd), ld 3C
      const float* p = patt + bh * T * T;                // (T, T)
      const float* dout_h = pdout + b * T * C + h * hd;  // (T, hd), ld C
      float* dq = pdqkv + b * T * C3 + h * hd;           // (T, hd), ld 3C
      float* dk = dq + C;
      float* dv = dq + 2 * C;
      // Query blocks: dS rows and dQ.
      for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
        const int64_t i1 = std::min(T, i0 + kBlock), rows = i1 - i0;
        // dP[I, 0:i1] = dO[I] V[0:i1]^T
        gemm(CblasNoTrans, CblasTrans, rows, i1, hd, 1.0f, dout_h + i0 * C, C, v, C3, 0.0f,
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
        gemm(CblasNoTrans, CblasNoTrans, rows, hd, i1, 1.0f, ds + i0 * T, T, k, C3, 0.0f,
             dq + i0 * C3, C3);
      }
      // Key blocks: only queries j0.. see keys J = [j0, j1).
      for (int64_t j0 = 0; j0 < T; j0 += kBlock) {
        const int64_t j1 = std::min(T, j0 + kBlock), cols = j1 - j0, n_q = T - j0;
        // dV[J] = P[j0:T, J]^T dO[j0:T]
        gemm(CblasTrans, CblasNoTrans, cols, hd, n_q, 1.0f, pm + j0 * T + j0, T, dout_h + j0 * C, C,
             0.0f, dv + j0 * C3, C3);
        // dK[J] = dS[j0:T, J]^T Q[j0:T]
        gemm(CblasTrans, CblasNoTrans, cols, hd, n_q, 1.0f, ds + j0 * T + j0, T, q + j0 * C3, C3,
             0.0f, dk + j0 * C3, C3);
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
