// The Llama family: Hugging Face LlamaForCausalLM, Qwen2ForCausalLM and Qwen3ForCausalLM,
// registered as three model families (llama, qwen2, qwen3) that share this folder:
//   llama  RMSNorm, RoPE (theta; Llama 3's "llama3" rope_scaling), grouped-query attention,
//          SwiGLU MLP, no biases (attention_bias / mlp_bias add them), untied or tied head
//   qwen2  + q/k/v biases (never on o_proj)
//   qwen3  + per-head RMSNorm of q and k before RoPE (q_norm, k_norm), head_dim set apart
// exactly as ../shared/reference/make_llama_reference.py writes them.
//
// peng's parameters (nn.Linear (out, in) layout, as Hugging Face stores them) fuse what
// Hugging Face keeps apart, so each layer runs one projection for q, k, v and one for the
// MLP's gate and up:
//   embed_tokens.weight                      model.embed_tokens.weight
//   layers.{i}.input_layernorm.weight        model.layers.{i}.input_layernorm.weight
//   layers.{i}.self_attn.qkv_proj.weight     [q_proj; k_proj; v_proj].weight (rows)
//   layers.{i}.self_attn.qkv_proj.bias       [q_proj; k_proj; v_proj].bias     (qwen2)
//   layers.{i}.self_attn.q_norm.weight, k_norm.weight                           (qwen3)
//   layers.{i}.self_attn.o_proj.weight       model.layers.{i}.self_attn.o_proj.weight
//   layers.{i}.post_attention_layernorm.weight
//   layers.{i}.mlp.gate_up_proj.weight       [gate_proj; up_proj].weight (rows)
//   layers.{i}.mlp.down_proj.weight
//   norm.weight                              model.norm.weight
//   lm_head.weight                           lm_head.weight (untied only)
#pragma once

#include "peng/models/registry.h"

namespace peng {

const ModelFamily& llama_family();
const ModelFamily& qwen2_family();
const ModelFamily& qwen3_family();

namespace llama {
// The Hugging Face tensors of one parameter under this mapping (the qkv and gate/up blocks
// split into their Hugging Face parts, "model." in front of all but lm_head): shared with
// the families built on Llama attention and SwiGLU (deepseek_moe).
HfTensor hf_tensor(const DecoderConfig& c, const Parameter& p);
}  // namespace llama

}  // namespace peng
