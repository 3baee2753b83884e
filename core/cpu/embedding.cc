// Token + position embedding, forward and backward.
//
// Layout: tokens (B, T) i32, wte (Vp, C), wpe (Tmax, C), out / dout (B, T, C).
// Forward: out[b, t] = wte[tokens[b, t]] + wpe[t], (b, t) rows spread over threads.
// Backward: dwte[tokens[b, t]] += dout[b, t] and dwpe[t] += dout[b, t]. Tokens repeat, so
// rows of dwte collide; instead of atomics each thread owns a range of channels (whole
// cache lines) and walks all (b, t) in order: race-free and deterministic.
// Token ids are checked against [0, Vp) before anything is written.
#include <omp.h>

#include <algorithm>

#include "core/cpu/cpu_backend.h"

namespace peng {
namespace {

void check_tokens(const char* op, const int32_t* tok, int64_t n, int64_t vp) {
  for (int64_t i = 0; i < n; ++i) {
    PENG_CHECK(tok[i] >= 0 && tok[i] < vp, op, ": token id ", tok[i], " at flat index ", i,
               " is outside the embedding table [0, ", vp, ")");
  }
}

}  // namespace

void CpuBackend::embedding_forward(const Tensor& tokens, const Tensor& wte, const Tensor& wpe,
                                   Tensor& out) {
  const char* op = "embedding_forward";
  cpu::check_tensor(op, "tokens", tokens, DType::kI32);
  cpu::check_tensor(op, "wte", wte);
  cpu::check_tensor(op, "wpe", wpe);
  PENG_CHECK(tokens.ndim() == 2, op, ": tokens must be (B, T), got ", tokens.str());
  PENG_CHECK(wte.ndim() == 2 && wpe.ndim() == 2 && wte.dim(1) == wpe.dim(1), op,
             ": wte (Vp, C) and wpe (Tmax, C) must share C, got ", wte.str(), " and ", wpe.str());
  const int64_t B = tokens.dim(0), T = tokens.dim(1), C = wte.dim(1), vp = wte.dim(0);
  PENG_CHECK(T <= wpe.dim(0), op, ": sequence length ", T, " exceeds wpe ", wpe.str());
  cpu::check_shape(op, "out", out, {B, T, C});
  const int32_t* tok = tokens.data<const int32_t>();
  check_tokens(op, tok, B * T, vp);

  const float* pwte = wte.data<const float>();
  const float* pwpe = wpe.data<const float>();
  float* pout = out.data<float>();
#pragma omp parallel for schedule(static) if (B * T * C >= cpu::kParallelMin)
  for (int64_t bt = 0; bt < B * T; ++bt) {
    const float* e = pwte + int64_t(tok[bt]) * C;  // (C)
    const float* p = pwpe + (bt % T) * C;          // (C)
    float* o = pout + bt * C;                      // (C)
#pragma omp simd
    for (int64_t j = 0; j < C; ++j) o[j] = e[j] + p[j];
  }
}

void CpuBackend::embedding_backward(const Tensor& dout, const Tensor& tokens, Tensor& dwte,
                                    Tensor& dwpe) {
  const char* op = "embedding_backward";
  cpu::check_tensor(op, "tokens", tokens, DType::kI32);
  cpu::check_tensor(op, "dwte", dwte);
  cpu::check_tensor(op, "dwpe", dwpe);
  PENG_CHECK(tokens.ndim() == 2, op, ": tokens must be (B, T), got ", tokens.str());
  PENG_CHECK(dwte.ndim() == 2 && dwpe.ndim() == 2 && dwte.dim(1) == dwpe.dim(1), op,
             ": dwte (Vp, C) and dwpe (Tmax, C) must share C, got ", dwte.str(), " and ",
             dwpe.str());
  const int64_t B = tokens.dim(0), T = tokens.dim(1), C = dwte.dim(1), vp = dwte.dim(0);
  PENG_CHECK(T <= dwpe.dim(0), op, ": sequence length ", T, " exceeds dwpe ", dwpe.str());
  cpu::check_shape(op, "dout", dout, {B, T, C});
  const int32_t* tok = tokens.data<const int32_t>();
  check_tokens(op, tok, B * T, vp);

  const float* pdout = dout.data<const float>();
  float* pdwte = dwte.data<float>();
  float* pdwpe = dwpe.data<float>();
#pragma omp parallel if (B * T * C >= cpu::kParallelMin)
  {
    const int nt = omp_get_num_threads(), th = omp_get_thread_num();
    int64_t per = (C + nt - 1) / nt;
    per = (per + 15) / 16 * 16;
    const int64_t c0 = std::min(C, th * per), c1 = std::min(C, c0 + per);
    for (int64_t bt = 0; bt < B * T; ++bt) {
      const float* g = pdout + bt * C;
      float* e = pdwte + int64_t(tok[bt]) * C;
      float* p = pdwpe + (bt % T) * C;
#pragma omp simd
      for (int64_t j = c0; j < c1; ++j) {
        e[j] += g[j];
        p[j] += g[j];
      }
    }
  }
}

}  // namespace peng
