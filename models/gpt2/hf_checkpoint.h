// Hugging Face GPT-2 checkpoint folders: config.json + model.safetensors (or shards with
// model.safetensors.index.json; models/hf/hf_weights.h does the file work).
//
// The GPT-2 family's own pieces (parse_hf_gpt2_config, hf_gpt2_config_json,
// gpt2_hf_weights: models/gpt2/family.cc registers them) and the GPT-2 API that came
// before model families (Gpt2Config in and out, kept for C++ users and the GPT-2 tests;
// family-independent code goes through models/registry.h).
//
// Independent of the model class: parameters travel as a name -> Tensor map. peng's
// parameter names ARE the Hugging Face names without the `transformer.` prefix, and every
// tensor keeps the HF layout (Conv1D matrices [in, out], y = x·W + b):
//   wte.weight (V, C)   wpe.weight (n_positions, C)
//   h.{i}.ln_1.weight / .bias (C)
//   h.{i}.attn.c_attn.weight (C, 3C) / .bias (3C)
//   h.{i}.attn.c_proj.weight (C, C)  / .bias (C)
//   h.{i}.ln_2.weight / .bias (C)
//   h.{i}.mlp.c_fc.weight (C, 4C)    / .bias (4C)
//   h.{i}.mlp.c_proj.weight (4C, C)  / .bias (C)
//   ln_f.weight / .bias (C)
// V is the REAL vocabulary (cfg.vocab_size), never the padded one. The LM head is tied to wte.
//
// Errors: bad or missing files, fields and tensors throw peng::InputError naming the file and
// the field or tensor; operating-system failures throw peng::IoError.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "peng/core/dtype.h"
#include "peng/core/tensor.h"
#include "peng/models/gpt2/config.h"
#include "peng/models/hf/hf_config.h"
#include "peng/models/hf/hf_weights.h"

namespace peng {

// Parses DIR/config.json (HF GPT2Config keys). Required: n_layer, n_head, n_embd, vocab_size,
// and n_positions (or the legacy n_ctx), all integers. layer_norm_epsilon defaults to 1e-5
// (the HF default) when absent. When present, these must describe the model peng builds:
// model_type "gpt2"; activation_function "gelu_new", "gelu_pytorch_tanh" or "gelu_fast"
// (all the tanh approximation); tie_word_embeddings true; n_inner null or 4*n_embd;
// scale_attn_weights true; scale_attn_by_inverse_layer_idx and add_cross_attention false.
// Other keys are ignored. The result passes Gpt2Config::validate().
Gpt2Config read_hf_gpt2_config(const std::filesystem::path& dir);
// The same rules on an already parsed config object.
Gpt2Config parse_hf_gpt2_config(const JsonFields& fields);
// The config.json object write_hf_gpt2_config writes.
Json hf_gpt2_config_json(const Gpt2Config& cfg);

// Writes DIR/config.json (atomically) with the keys make_reference.py writes: model_type,
// architectures, vocab_size, n_positions, n_ctx, n_embd, n_layer, n_head,
// layer_norm_epsilon, activation_function ("gelu_new"), tie_word_embeddings (true).
void write_hf_gpt2_config(const std::filesystem::path& dir, const Gpt2Config& cfg);

// Every parameter name in the canonical order: wte, wpe, then per layer ln_1.{weight,bias},
// attn.c_attn.{weight,bias}, attn.c_proj.{weight,bias}, ln_2.{weight,bias},
// mlp.c_fc.{weight,bias}, mlp.c_proj.{weight,bias}; then ln_f.{weight,bias}.
std::vector<std::string> gpt2_parameter_names(const Gpt2Config& cfg);

// The HF shape of one parameter (see the table above; wte uses the real vocab_size).
// Throws InputError for a name that is not a parameter of this config.
Shape gpt2_parameter_shape(const Gpt2Config& cfg, const std::string& name);

// Where GPT-2's parameters sit in a Hugging Face folder (the rules below).
HfWeights gpt2_hf_weights(const Gpt2Config& cfg);

// Reads DIR's weights into f32 CPU tensors keyed by peng (= HF, unprefixed) names.
//  - names may carry the `transformer.` prefix (GPT2LMHeadModel) or not (GPT2Model);
//  - `lm_head.weight` is ignored (tied), but if present must have wte's shape;
//  - the buffers `h.{i}.attn.bias` / `h.{i}.attn.masked_bias` of old checkpoints are ignored;
//  - every parameter must be present exactly once with exactly gpt2_parameter_shape();
//  - F32, BF16 and F16 are converted to f32 (exactly); any other dtype is an error;
//  - any other tensor is an error naming it (a wrong file is never silently accepted);
//  - a non-finite value is an error naming the tensor.
std::map<std::string, Tensor> load_hf_gpt2(const std::filesystem::path& dir, const Gpt2Config& cfg);

// Creates DIR (and parents) and writes config.json and model.safetensors: the parameters
// without prefix, in gpt2_parameter_names() order, converted to `dtype` (F32, BF16 or F16;
// round to nearest even), with metadata {"format": "pt"}. `params` must hold exactly the
// parameters of `cfg` (any device, any float dtype); wte may also have cfg.padded_vocab()
// rows, of which the first vocab_size are written. Both files are written atomically.
// For F32, load_hf_gpt2(save_hf_gpt2(x)) == x bit for bit; for a BF16/F16 file,
// save_hf_gpt2(load_hf_gpt2(file), same dtype) reproduces the stored bytes.
void save_hf_gpt2(const std::filesystem::path& dir, const Gpt2Config& cfg,
                  const std::map<std::string, Tensor>& params, DType dtype = DType::kF32);

}  // namespace peng
