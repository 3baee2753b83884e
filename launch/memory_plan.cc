#include "peng/launch/memory_plan.h"

#include <algorithm>

namespace peng {

namespace {
constexpr int64_t kF32 = 4;

// A SwiGLU (or GELU) MLP of `hidden` local features over `rows` rows: pre-activation,
// activation (unless recomputed) and output.
int64_t mlp_floats(const DecoderConfig& c, int64_t rows, int64_t hidden, bool drop_act) {
  const int64_t pre = rows * hidden * (c.mlp == MlpKind::kSwiGlu ? 2 : 1);
  return pre + (drop_act ? 0 : rows * hidden) + rows * c.n_embd;
}

int64_t moe_floats(const DecoderConfig& c, int64_t n, bool drop_act) {
  const MoeConfig& m = c.moe;
  const int64_t routed = n * m.topk, e = m.experts;
  int64_t f = 2 * n * e + 2 * routed;   // logits, scores; chosen (i32) and weights
  f += routed * c.n_embd * 2 + routed;  // rows in and out, their weights
  f += mlp_floats(c, routed, m.expert_hidden, drop_act);  // the experts, on k*N rows
  f += 2 * routed + 2 * e + 4;                            // the dispatch plan
  if (m.shared > 0) f += mlp_floats(c, n, m.shared * m.expert_hidden, drop_act);
  return f + n * c.n_embd;  // the layer's output
}
}  // namespace

int64_t layer_activation_bytes(const DecoderConfig& c, int layer, const ActivationShape& s,
                               const RecomputePolicy& p) {
  const int64_t n = s.batch * s.seq, cc = c.n_embd;
  const bool sp = s.sequence_parallel && s.tp > 1;
  const int64_t r = sp ? n / s.tp : n;
  if (p.full) return r * cc * kF32;  // the output; the input is the previous layer's
  const int64_t hl = c.n_head / s.tp, kl = std::max(1, c.n_kv_head / s.tp);
  const int64_t g = hl + 2 * kl, hd = c.head_dim;
  const int64_t fl = (c.ffn_hidden + s.tp - 1) / s.tp;
  const int64_t stats = c.norm == NormKind::kLayerNorm ? 2 : 1;
  int64_t f = 2 * (p.norm ? 0 : r * cc) + 2 * r * stats;  // norms
  f += n * g * hd;                                        // qkv
  if (c.qk_norm) f += n * g * hd + n * (hl + kl);
  f += p.core_attn ? 0 : s.batch * hl * s.seq * s.seq;         // probabilities
  f += n * hl * hd;                                            // attention output
  f += sp ? r * cc + n * cc + (p.norm ? 0 : n * cc) : n * cc;  // projection (+ gathered rows)
  if (c.moe.is_moe_layer(layer)) {
    f += moe_floats(c, r, p.mlp_act);
  } else {
    f += mlp_floats(c, n, fl, p.mlp_act) - n * cc;               // its output below
    f += sp ? r * cc + n * cc + (p.norm ? 0 : n * cc) : n * cc;  // out (+ gathered rows)
  }
  return (f + 2 * r * cc) * kF32;  // + x2, x3
}

int64_t embedding_activation_bytes(const DecoderConfig& c, const ActivationShape& s) {
  const int64_t n = s.batch * s.seq;
  const bool sp = s.sequence_parallel && s.tp > 1;
  return (n + (sp ? n / s.tp + n : n) * c.n_embd) * kF32;  // tokens (i32), output
}

int64_t head_activation_bytes(const DecoderConfig& c, const ActivationShape& s) {
  const int64_t n = s.batch * s.seq;
  const bool sp = s.sequence_parallel && s.tp > 1;
  const int64_t norm = (sp ? n / s.tp + n : n) * c.n_embd + n;  // output (+ gathered), rstd
  const int64_t logits = n * c.padded_vocab(s.tp) / s.tp;
  const int64_t loss = s.tp > 1 ? 3 * n : n;  // (row max and sums) or per-position losses
  return (norm + logits + n + loss) * kF32;   // + targets (i32)
}

int64_t chunk_activation_bytes(const DecoderConfig& c, int first, int count,
                               const ActivationShape& s, const RecomputePolicy& p, bool embedding,
                               bool head) {
  int64_t bytes = embedding ? embedding_activation_bytes(c, s) : 0;
  for (int l = first; l < first + count; ++l) {
    const bool on = p.layers < 0 || l - first < p.layers;
    bytes += layer_activation_bytes(c, l, s, on ? p : RecomputePolicy{});
  }
  return bytes + (head ? head_activation_bytes(c, s) : 0);
}

int in_flight_chunks(const Schedule& schedule, int rank) {
  if (schedule.empty()) return 1;
  int held = 0, most = 0;
  for (const Action& a : schedule[size_t(rank)]) {
    if (a.op == Action::kForward) most = std::max(most, ++held);
    if (a.op == Action::kBackward) --held;
  }
  return most;
}

StateBytes state_bytes(int64_t numel, int dp, int zero) {
  const int64_t n = numel, s = (numel + dp - 1) / dp;
  switch (zero) {
    case 0:
      return {.values = kF32 * n, .grads = kF32 * n, .optimizer = 2 * kF32 * n};
    case 1:
      return {.values = kF32 * n, .grads = kF32 * (n + s), .optimizer = 2 * kF32 * s};
    case 2:
      return {.values = kF32 * n, .grads = kF32 * s, .optimizer = 2 * kF32 * s};
    default:
      return {.values = kF32 * s, .grads = kF32 * s, .optimizer = 2 * kF32 * s};
  }
}

}  // namespace peng
