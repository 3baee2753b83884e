// Model FLOPs accounting (the convention of PaLM appendix B and nanoGPT's estimate_mfu):
//   model FLOPs per token = 6 N + 12 L C T
// N: parameters that take part in matmuls = all parameters but the position embedding
// (the token embedding counts once, as the tied LM head; padding rows never count);
// L layers, C = n_head * head_dim, T sequence length. Forward + backward, no discount
// for the causal mask, no recomputation.
#pragma once

#include <cstdint>

namespace peng {

struct FlopsShape {
  int64_t params = 0;  // N as defined above
  int64_t n_layer = 0;
  int64_t n_embd = 0;
  int64_t seq_len = 0;
};

double model_flops_per_token(const FlopsShape& s);

}  // namespace peng
