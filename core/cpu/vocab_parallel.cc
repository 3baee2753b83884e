// Embedding and cross-entropy on a vocabulary shard (Megatron's vocab-parallel layers).
//
// Layout: tokens / targets (B, T) or (N) i32; wte_shard (Vl, C) holds vocabulary rows
// [vocab_begin, vocab_begin + Vl); logits (N, Vl) the same columns, of which the first
// `valid` are real tokens. Rows are spread over OpenMP threads.
// Embedding forward: a token outside the shard gives a zero row, so summing over the
// shards gives exactly wte[tok] (+ wpe[t], added on one shard only).
// Embedding backward: like embedding_backward, threads own channel ranges and walk every
// (b, t) in order (deterministic); tokens outside the shard are skipped.
// Cross-entropy: per row the shard max, then sum exp(l - max) with the group's max (double
// accumulation) and the target's logit when it is in the shard; the caller reduces over
// the group between the passes. Backward recomputes exp(l - max) / sum per column.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/cpu/cpu_backend.h"

namespace peng {

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
    for (int64_t j = 0; j < C; ++j) o[j] = (e ? e[j] : 0.0f) + (p ? p[j] : 0.0f);
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

namespace {
struct ShardDims {
  int64_t n, vl;
};
ShardDims shard_dims(const char* op, const Tensor& logits, int64_t valid) {
  cpu::check_tensor(op, "logits", logits);
  PENG_CHECK(logits.ndim() >= 1, op, ": logits must be (N, Vl), got ", logits.str());
  ShardDims d{cpu::rows_of(logits), logits.dim(-1)};
  PENG_CHECK(valid >= 0 && valid <= d.vl, op, ": valid ", valid, " outside [0, ", d.vl, "]");
  return d;
}
}  // namespace

void CpuBackend::cross_entropy_shard_max(const Tensor& logits, int64_t valid, Tensor& row_max) {
  const char* op = "cross_entropy_shard_max";
  const ShardDims d = shard_dims(op, logits, valid);
  cpu::check_shape(op, "row_max", row_max, {d.n});
  const float* l = logits.data<const float>();
  float* mx = row_max.data<float>();
#pragma omp parallel for schedule(static) if (d.n * valid >= cpu::kParallelMin)
  for (int64_t i = 0; i < d.n; ++i) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < valid; ++j) m = std::max(m, l[i * d.vl + j]);
    mx[i] = m;
  }
}

void CpuBackend::cross_entropy_shard_sums(const Tensor& logits, const Tensor& targets,
                                          int64_t vocab_begin, int64_t valid, const Tensor& row_max,
                                          Tensor& stats) {
  const char* op = "cross_entropy_shard_sums";
  const ShardDims d = shard_dims(op, logits, valid);
  cpu::check_tensor(op, "targets", targets, DType::kI32);
  PENG_CHECK(targets.numel() == d.n, op, ": targets ", targets.str(), " for ", d.n, " rows");
  cpu::check_shape(op, "row_max", row_max, {d.n});
  cpu::check_shape(op, "stats", stats, {d.n, 2});
  const float* l = logits.data<const float>();
  const int32_t* t = targets.data<const int32_t>();
  const float* mx = row_max.data<const float>();
  float* st = stats.data<float>();
#pragma omp parallel for schedule(static) if (d.n * valid >= cpu::kParallelMin)
  for (int64_t i = 0; i < d.n; ++i) {
    const float* row = l + i * d.vl;
    double sum = 0;
    for (int64_t j = 0; j < valid; ++j) sum += std::exp(double(row[j]) - double(mx[i]));
    const int64_t col = int64_t(t[i]) - vocab_begin;
    st[2 * i] = float(sum);
    st[2 * i + 1] = col >= 0 && col < valid ? row[col] : 0.0f;
  }
}

void CpuBackend::cross_entropy_shard_backward(const Tensor& logits, const Tensor& targets,
                                              int64_t vocab_begin, int64_t valid,
                                              const Tensor& row_max, const Tensor& stats,
                                              float dloss, Tensor& dlogits) {
  const char* op = "cross_entropy_shard_backward";
  const ShardDims d = shard_dims(op, logits, valid);
  cpu::check_tensor(op, "targets", targets, DType::kI32);
  PENG_CHECK(targets.numel() == d.n, op, ": targets ", targets.str(), " for ", d.n, " rows");
  cpu::check_shape(op, "row_max", row_max, {d.n});
  cpu::check_shape(op, "stats", stats, {d.n, 2});
  cpu::check_shape(op, "dlogits", dlogits, logits.shape());
  const float* l = logits.data<const float>();
  const int32_t* t = targets.data<const int32_t>();
  const float* mx = row_max.data<const float>();
  const float* st = stats.data<const float>();
  float* dl = dlogits.data<float>();
#pragma omp parallel for schedule(static) if (d.n * d.vl >= cpu::kParallelMin)
  for (int64_t i = 0; i < d.n; ++i) {
    const int64_t col = int64_t(t[i]) - vocab_begin;
    const float inv = 1.0f / st[2 * i];
    for (int64_t j = 0; j < d.vl; ++j) {
      const int64_t k = i * d.vl + j;
      dl[k] = j < valid ? dloss * (std::exp(l[k] - mx[i]) * inv - (j == col ? 1.0f : 0.0f)) : 0.0f;
    }
  }
}

}  // namespace peng
