// Token + position embedding, forward and backward, whole or on a vocabulary shard
// (Megatron's vocab-parallel embedding).
//
// Layout: tokens (B, T) i32, wte (Vl, C) holding vocabulary rows [vocab_begin,
// vocab_begin + Vl) (the whole table: vocab_begin 0, Vl = Vp), wpe (Tmax, C), out / dout
// (B, T, C).
// Forward: out[b, t] = wte[tokens[b, t] - vocab_begin] (zero for a token outside the shard,
// so the sum over shards is exact) + wpe[t] (added by one shard only), (b, t) rows spread
// over threads.
// Backward: dwte[tokens[b, t] - vocab_begin] += dout[b, t] (tokens in the shard) and
// dwpe[t] += dout[b, t]. Tokens repeat, so rows of dwte collide; instead of atomics each
// thread owns a range of channels (whole cache lines) and walks all (b, t) in order:
// race-free and deterministic.
// The whole-table ops check token ids against [0, Vp) before anything is written.
#include <omp.h>

#include <algorithm>

#include "peng/core/cpu/cpu_backend.h"

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
  PENG_CHECK(wpe.defined(), op, ": wpe is required");
  PENG_CHECK(tokens.ndim() == 2 && wte.ndim() == 2, op, ": tokens (B, T) and wte (Vp, C), got ",
             tokens.str(), " and ", wte.str());
  check_tokens(op, tokens.data<const int32_t>(), tokens.numel(), wte.dim(0));
  embedding_forward_shard(tokens, wte, 0, wpe, out);
}

void CpuBackend::embedding_backward(const Tensor& dout, const Tensor& tokens, Tensor& dwte,
                                    Tensor& dwpe) {
  const char* op = "embedding_backward";
  cpu::check_tensor(op, "tokens", tokens, DType::kI32);
  cpu::check_tensor(op, "dwte", dwte);
  PENG_CHECK(dwpe.defined(), op, ": dwpe is required");
  PENG_CHECK(tokens.ndim() == 2 && dwte.ndim() == 2, op, ": tokens (B, T) and dwte (Vp, C), got ",
             tokens.str(), " and ", dwte.str());
  check_tokens(op, tokens.data<const int32_t>(), tokens.numel(), dwte.dim(0));
  embedding_backward_shard(dout, tokens, 0, dwte, dwpe);
}

void CpuBackend::embedding_forward_shard(const Tensor& tokens, const Tensor& wte_shard,
                                         int64_t vocab_begin, const Tensor& wpe, Tensor& out) {
  const char* op = "embedding_forward_shard";
  cpu::check_tensor(op, "tokens", tokens, DType::kI32);
  cpu::check_tensor(op, "wte_shard", wte_shard);
  PENG_CHECK(tokens.ndim() == 2 && wte_shard.ndim() == 2, op,
             ": tokens (B, T) and wte (Vl, C), got ", tokens.str(), " and ", wte_shard.str());
  const int64_t B = tokens.dim(0), T = tokens.dim(1), C = wte_shard.dim(1), vl = wte_shard.dim(0);
  if (wpe.defined()) {
    cpu::check_tensor(op, "wpe", wpe);
    PENG_CHECK(wpe.ndim() == 2 && wpe.dim(1) == C && wpe.dim(0) >= T, op, ": wpe ", wpe.str(),
               " does not fit (T = ", T, ", C = ", C, ")");
  }
  cpu::check_shape(op, "out", out, {B, T, C});
  const int32_t* tok = tokens.data<const int32_t>();
  const float* pwte = wte_shard.data<const float>();
  const float* pwpe = wpe.defined() ? wpe.data<const float>() : nullptr;
  float* pout = out.data<float>();
#pragma omp parallel for schedule(static) if (B * T * C >= cpu::kParallelMin)
  for (int64_t bt = 0; bt < B * T; ++bt) {
    const int64_t row = int64_t(tok[bt]) - vocab_begin;
    const float* e = row >= 0 && row < vl ? pwte + row * C : nullptr;  // (C) or none
    const float* p = pwpe ? pwpe + (bt % T) * C : nullptr;             // (C) or none
    float* o = pout + bt * C;                                          // (C)
    if (e && p) {
#pragma omp simd
      for (int64_t j = 0; j < C; ++j) o[j] = e[j] + p[j];
    } else if (e || p) {
      std::copy(e ? e : p, (e ? e : p) + C, o);
    } else {
      std::fill(o, o + C, 0.0f);
    }
  }
}

void CpuBackend::embedding_backward_shard(const Tensor& dout, const Tensor& tokens,
                                          int64_t vocab_begin, Tensor& dwte_shard, Tensor& dwpe) {
  const char* op = "embedding_backward_shard";
  cpu::check_tensor(op, "tokens", tokens, DType::kI32);
  cpu::check_tensor(op, "dwte_shard", dwte_shard);
  PENG_CHECK(tokens.ndim() == 2 && dwte_shard.ndim() == 2, op,
             ": tokens (B, T) and dwte (Vl, C), got ", tokens.str(), " and ", dwte_shard.str());
  const int64_t B = tokens.dim(0), T = tokens.dim(1), C = dwte_shard.dim(1);
  const int64_t vl = dwte_shard.dim(0);
  cpu::check_shape(op, "dout", dout, {B, T, C});
  if (dwpe.defined()) {
    cpu::check_tensor(op, "dwpe", dwpe);
    PENG_CHECK(dwpe.ndim() == 2 && dwpe.dim(1) == C && dwpe.dim(0) >= T, op, ": dwpe ", dwpe.str(),
               " does not fit (T = ", T, ", C = ", C, ")");
  }
  const int32_t* tok = tokens.data<const int32_t>();
  const float* pdout = dout.data<const float>();
  float* pdwte = dwte_shard.data<float>();
  float* pdwpe = dwpe.defined() ? dwpe.data<float>() : nullptr;
#pragma omp parallel if (B * T * C >= cpu::kParallelMin)
  {
    const int nt = omp_get_num_threads(), th = omp_get_thread_num();
    int64_t per = (C + nt - 1) / nt;
    per = (per + 15) / 16 * 16;
    const int64_t c0 = std::min(C, th * per), c1 = std::min(C, c0 + per);
    for (int64_t bt = 0; bt < B * T; ++bt) {
      const float* g = pdout + bt * C;
      const int64_t row = int64_t(tok[bt]) - vocab_begin;
      if (row >= 0 && row < vl) {
        float* e = pdwte + row * C;
        for (int64_t j = c0; j < c1; ++j) e[j] += g[j];
      }
      if (pdwpe) {
        float* p = pdwpe + (bt % T) * C;
        for (int64_t j = c0; j < c1; ++j) p[j] += g[j];
      }
    }
  }
}

}  // namespace peng
