// Model FLOPs accounting.
//
// The convention of PaLM (appendix B) and nanoGPT's estimate_mfu; MFU uses it:
//   model FLOPs per token = 6 N + 12 L C T
// N: parameters that take part in matmuls = all parameters but the position embedding
// (the token embedding counts once, as the tied LM head; padding rows never count);
// L layers, C = n_head * head_dim (PaLM's H * Q), T sequence length. Forward + backward
// (x3), no discount for the causal mask, no recomputation.
//
// For comparison, Megatron-LM's num_floating_point_operations halves the attention term
// for a causal mask: 6 N + 6 L C T.
//
// Hardware FLOPs (HFU) are what the kernels execute: 6 N + 12 L C T * f + recomputation,
// where f is the fraction of the T x T attention products the attention kernel computes
// (peng's CPU kernel skips whole blocks above the diagonal: Backend::attention_work_fraction)
// and nothing is recomputed (activations are kept; see models/). Elementwise work
// (softmax, LayerNorm, GELU, AdamW) is not counted in either figure.
#pragma once

#include <cstdint>

namespace peng {

struct FlopsShape {
  int64_t params = 0;  // N as defined above
  int64_t n_layer = 0;
  int64_t n_embd = 0;
  int64_t seq_len = 0;
  double attention_fraction = 1.0;       // f: executed share of the attention products
  double recompute_flops_per_token = 0;  // forward work repeated for activation recomputation
};

// PaLM: 6 N + 12 L C T.
double model_flops_per_token(const FlopsShape& s);
// Megatron-LM (causal): 6 N + 6 L C T.
double causal_model_flops_per_token(const FlopsShape& s);
// Executed: 6 N + 12 L C T f + recomputation.
double hardware_flops_per_token(const FlopsShape& s);

// Model FLOPs utilisation: achieved FLOP/s per device over the peak FLOP/s of one device.
// flops_per_token * tokens / seconds / devices / peak.
double utilisation(double flops_per_token, double tokens, double seconds, int devices,
                   double peak_flops);

}  // namespace peng
