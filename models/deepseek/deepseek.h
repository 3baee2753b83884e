// The DeepSeek-MoE family (deepseek_moe): Llama attention (RMSNorm, RoPE, grouped-query
// attention, no biases, untied head) with Mixture-of-Experts feed-forwards
// (models/nn/moe.h): the first `first_k_dense_replace` layers dense SwiGLU, the others
// `n_routed_experts` fine-grained SwiGLU experts of width `moe_intermediate_size`,
// `num_experts_per_tok` per token, optional shared experts, softmax or sigmoid scores,
// norm_topk_prob, the load-balancing loss (aux_loss_alpha) and DeepSeek-V3's
// auxiliary-loss-free bias (bias_update_speed). ../shared/reference/make_moe_reference.py's
// docstring is the specification; its config.json keys and tensor names are the format:
//   model.embed_tokens.weight, model.norm.weight, lm_head.weight
//   model.layers.{l}.{input_layernorm, post_attention_layernorm}.weight
//   model.layers.{l}.self_attn.{q,k,v,o}_proj.weight
//   dense layers:  model.layers.{l}.mlp.{gate,up,down}_proj.weight
//   MoE layers:    model.layers.{l}.mlp.gate.weight (E, C)            the router
//                  model.layers.{l}.mlp.experts.{e}.{gate,up,down}_proj.weight
//                  model.layers.{l}.mlp.shared_experts.{gate,up,down}_proj.weight
//                  model.layers.{l}.mlp.gate.e_score_correction_bias (E)  buffer, written last
// peng fuses gate_proj and up_proj into one gate_up_proj and q/k/v into qkv_proj, as for
// Llama.
#pragma once

#include <string>
#include <vector>

#include "peng/models/decoder/config.h"
#include "peng/models/hf/hf_config.h"
#include "peng/models/registry.h"

namespace peng {

const ModelFamily& deepseek_moe_family();

namespace deepseek {

// The family's structure with every size 0 (unset).
DecoderConfig base_config();
// Derives unset sizes (n_kv_head = n_head, head_dim = n_embd / n_head, max_seq_len 2048,
// a dense MLP width of ... the experts' when every layer is MoE) and checks the
// constraints, naming the field.
void complete_config(DecoderConfig& c);
// config.json; refuses, by key, routing the family does not implement: group-limited
// routing (n_group / topk_group > 1, topk_method other than "greedy" / "noaux_tc"),
// routed_scaling_factor != 1, moe_layer_freq != 1, sequence-wise aux loss (seq_aux),
// multi-head latent attention (kv_lora_rank), rope_scaling, attention biases.
DecoderConfig parse_hf_config(const JsonFields& f);
Json hf_config_json(const DecoderConfig& c, DType dtype);

const std::vector<std::string>& preset_names();
DecoderConfig preset(const std::string& name);

}  // namespace deepseek
}  // namespace peng
