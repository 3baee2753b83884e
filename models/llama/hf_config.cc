// The Llama family's config.json: reading (Hugging Face's keys and defaults of LlamaConfig,
// Qwen2Config, Qwen3Config) and writing (the keys make_llama_reference.py writes).
#include <climits>

#include "peng/core/error.h"
#include "peng/models/llama/variant.h"

namespace peng::llama {

namespace {

void refuse_unsupported(Variant v, const JsonFields& f) {
  if (auto act = f.string("hidden_act"); act && *act != "silu") {
    f.fail("hidden_act", "is \"" + *act + "\"; peng's SwiGLU MLP is \"silu\"");
  }
  if (f.number("attention_dropout", 0, 1).value_or(0) != 0) {
    f.fail("attention_dropout", "is not 0; attention dropout is not implemented");
  }
  if (f.integer("pretraining_tp", false, 1, 1024).value_or(1) != 1) {
    f.fail("pretraining_tp", "is not 1; not supported");
  }
  if (v == Variant::kLlama) {
    if (const Json* w = f.find("sliding_window"); w && !w->is_null()) {
      f.fail("sliding_window", "is set; sliding-window attention is not implemented");
    }
  } else if (f.boolean("use_sliding_window").value_or(false)) {
    f.fail("use_sliding_window", "is true; sliding-window attention is not implemented");
  }
  if (const Json* types = f.find("layer_types"); types && !types->is_null()) {
    for (const Json& t : *types) {
      if (t != "full_attention") {
        f.fail("layer_types", "holds " + t.dump() + "; only \"full_attention\" is implemented");
      }
    }
  }
}

// The frequency rule of a rope_scaling (v4) or rope_parameters (v5) object `s`, the value
// of `key`: "default" or "llama3" with its factors.
void read_rope_type(const JsonFields& f, const char* key, const Json& s, RopeConfig& rope) {
  const JsonFields r(s, f.file() + ": field \"" + key + "\"");
  const std::string type = r.string("rope_type").value_or(r.string("type").value_or("default"));
  if (type == "default") return;
  if (type != "llama3") {
    f.fail(key, "has rope_type \"" + type + "\"; only \"default\" and \"llama3\" are implemented");
  }
  rope.scaling = "llama3";
  rope.factor = r.number("factor", 1, 1e6).value_or(8);
  rope.low_freq_factor = r.number("low_freq_factor", 1e-6, 1e6).value_or(1);
  rope.high_freq_factor = r.number("high_freq_factor", 1e-6, 1e6).value_or(4);
  rope.original_max_position = *r.integer("original_max_position_embeddings", true, 1, INT32_MAX);
  if (rope.high_freq_factor <= rope.low_freq_factor) {
    f.fail(key, "has high_freq_factor <= low_freq_factor");
  }
}

// RoPE's base and frequency rule: Transformers v4's rope_theta and rope_scaling, or v5's
// rope_parameters {rope_theta, rope_type, ...} (one set for every layer).
void read_rope(const JsonFields& f, RopeConfig& rope) {
  const Json* params = f.find("rope_parameters");
  if (!params || params->is_null()) {
    rope.theta = f.number("rope_theta", 1, 1e30).value_or(10000.0);
    const Json* s = f.find("rope_scaling");
    if (!s || s->is_null()) return;
    if (!s->is_object()) f.fail("rope_scaling", "must be an object or null, got " + s->dump());
    return read_rope_type(f, "rope_scaling", *s, rope);
  }
  if (!params->is_object()) f.fail("rope_parameters", "must be an object, got " + params->dump());
  for (const char* old : {"rope_theta", "rope_scaling"}) {
    if (const Json* v = f.find(old); v && !v->is_null()) {
      f.fail("rope_parameters",
             std::string("is given together with \"") + old + "\": one or the other");
    }
  }
  if (!params->contains("rope_theta") && !params->contains("rope_type")) {
    f.fail("rope_parameters",
           "holds no rope_theta (per-layer-type parameters are not implemented)");
  }
  const JsonFields p(*params, f.file() + ": field \"rope_parameters\"");
  rope.theta = p.number("rope_theta", 1, 1e30).value_or(10000.0);
  read_rope_type(f, "rope_parameters", *params, rope);
}

}  // namespace

DecoderConfig parse_hf_config(Variant v, const JsonFields& f) {
  f.expect("model_type", family_name(v), std::string("expected \"") + family_name(v) + "\"");
  DecoderConfig c = base_config(v);
  c.n_embd = *f.integer("hidden_size", true, 1, INT32_MAX);
  c.ffn_hidden = *f.integer("intermediate_size", true, 1, INT32_MAX);
  c.n_layer = int(*f.integer("num_hidden_layers", true, 1, INT_MAX));
  c.n_head = int(*f.integer("num_attention_heads", true, 1, INT_MAX));
  c.n_kv_head = int(f.integer("num_key_value_heads", false, 1, INT_MAX).value_or(c.n_head));
  c.vocab_size = *f.integer("vocab_size", true, 1, INT32_MAX);
  c.max_seq_len = int(f.integer("max_position_embeddings", false, 1, INT_MAX).value_or(2048));
  c.head_dim = f.integer("head_dim", false, 1, INT32_MAX).value_or(c.head_dim);
  c.norm_eps = float(f.number("rms_norm_eps", 1e-30, 1).value_or(1e-6));
  read_rope(f, c.rope);
  c.tied_embeddings = f.boolean("tie_word_embeddings").value_or(false);
  if (v != Variant::kQwen2) {  // Qwen2's q/k/v always carry biases, its o_proj never
    c.qkv_bias = c.attn_out_bias = f.boolean("attention_bias").value_or(false);
  }
  if (v == Variant::kLlama) c.mlp_bias = f.boolean("mlp_bias").value_or(false);
  refuse_unsupported(v, f);
  try {
    complete_config(v, c);
  } catch (const InputError& e) {
    throw InputError(f.file() + ": " + e.what());
  }
  return c;
}

Json hf_config_json(const DecoderConfig& c, DType dtype) {
  const Variant v = variant_of(c);
  Json j = Json::object();
  j["model_type"] = family_name(v);
  j["architectures"] = Json::array({architecture(v)});
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.n_embd;
  j["intermediate_size"] = c.ffn_hidden;
  j["num_hidden_layers"] = c.n_layer;
  j["num_attention_heads"] = c.n_head;
  j["num_key_value_heads"] = c.n_kv_head;
  j["max_position_embeddings"] = c.max_seq_len;
  j["rms_norm_eps"] = shortest_decimal(c.norm_eps);
  j["rope_theta"] = c.rope.theta;
  if (c.rope.scaling == "llama3") {
    j["rope_scaling"] = {{"factor", c.rope.factor},
                         {"low_freq_factor", c.rope.low_freq_factor},
                         {"high_freq_factor", c.rope.high_freq_factor},
                         {"original_max_position_embeddings", c.rope.original_max_position},
                         {"rope_type", "llama3"}};
  }
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = c.tied_embeddings;
  j["torch_dtype"] = torch_dtype_name(dtype);
  if (v != Variant::kQwen2) j["attention_bias"] = c.qkv_bias;
  if (v == Variant::kLlama) j["mlp_bias"] = c.mlp_bias;
  if (v == Variant::kQwen3 || c.head_dim * c.n_head != c.n_embd) j["head_dim"] = c.head_dim;
  return j;
}

}  // namespace peng::llama
