// A model family registered from user code: Llama with a ReLU² MLP (Primer, So et al. 2021)
//   x = h + down_proj(relu(up_proj(rms(h)))^2)        no gate_proj; up_proj C -> F
// in place of SwiGLU, everything else Llama's. What it registers:
//   - the op "relu2" and its backward for the CPU backend (core/custom_op.h);
//   - the feed-forward layer "relu2_mlp" (models/nn/feed_forward.h), tensor-parallel through
//     peng's Linear: up_proj column-parallel, down_proj row-parallel;
//   - the family "llama_relu2" (models/registry.h), Hugging Face model_type "llama_relu2",
//     reusing the llama family for everything but the MLP.
// make_reference.py is the same architecture in PyTorch.
#pragma once

namespace relu2 {

// Registers the op, the layer and the family (once, before any Trainer is built).
void register_all();

}  // namespace relu2
