// Activation recomputation: what a transformer layer forgets after its forward and makes
// again in its backward, trading compute for memory (Megatron-Core's --recompute-granularity
// and --recompute-modules). Recomputed forwards run the same ops on the same inputs, so the
// arithmetic, and every loss and gradient, is bit for bit the same as without.
#pragma once

#include <string>
#include <utility>

namespace peng {

struct RecomputePolicy {
  // Keep only the layer's input (and its output, the next layer's input); run its whole
  // forward again, collectives included, before its backward.
  bool full = false;
  // Selective (with full unset):
  bool core_attn = false;  // the attention probabilities (B, H, T, T), from q, k and v
  bool mlp_act = false;    // the MLP activation's output, from its input
  bool norm = false;       // the two norms' outputs (and the gathered rows of the layers
                           // reading them under sequence parallelism), from their inputs
  // How many of each pipeline stage's layers (the first ones) recompute; -1: all.
  int layers = -1;

  bool any() const { return full || core_attn || mlp_act || norm; }
};

// "full, every layer" / "selective core_attn,norm, the first 2 layers of each stage".
inline std::string describe(const RecomputePolicy& p) {
  std::string s = p.full ? "full" : "selective ";
  if (!p.full) {
    for (const auto& [on, name] :
         {std::pair{p.core_attn, "core_attn"}, {p.mlp_act, "mlp_act"}, {p.norm, "norm"}}) {
      if (on) s += std::string(s.back() == ' ' ? "" : ",") + name;
    }
  }
  return s + (p.layers < 0 ? ", every layer"
                           : ", the first " + std::to_string(p.layers) + " layers of each stage");
}

}  // namespace peng
