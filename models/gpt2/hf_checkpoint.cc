#include "models/gpt2/hf_checkpoint.h"

#include <charconv>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/safetensors.h"

namespace peng {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

namespace {

constexpr const char* kConfigFile = "config.json";
constexpr const char* kWeightsFile = "model.safetensors";
constexpr const char* kPrefix = "transformer.";

// Per-layer parameter suffixes, in canonical order.
constexpr const char* kLayerParams[] = {
    "ln_1.weight",        "ln_1.bias",        "attn.c_attn.weight", "attn.c_attn.bias",
    "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight",        "ln_2.bias",
    "mlp.c_fc.weight",    "mlp.c_fc.bias",    "mlp.c_proj.weight",  "mlp.c_proj.bias",
};

// "h.{i}.{rest}" with a canonical decimal i (no sign, no leading zero) -> (i, rest).
std::optional<std::pair<int64_t, std::string>> split_layer(const std::string& name) {
  if (name.rfind("h.", 0) != 0) return std::nullopt;
  size_t dot = name.find('.', 2);
  if (dot == std::string::npos || dot == 2 || dot > 2 + 9) return std::nullopt;
  std::string digits = name.substr(2, dot - 2);
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  if (digits.size() > 1 && digits[0] == '0') return std::nullopt;
  return std::make_pair(std::stoll(digits), name.substr(dot + 1));
}

std::string config_summary(const Gpt2Config& cfg) {
  return detail::concat("n_layer=", cfg.n_layer, ", n_embd=", cfg.n_embd,
                        ", vocab_size=", cfg.vocab_size, ", n_positions=", cfg.max_seq_len);
}

bool is_float_dtype(DType t) {
  return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16 || t == DType::kF64;
}

// Index of the first non-finite element of a float tensor (CPU), or -1.
int64_t first_non_finite(const Tensor& t) {
  const int64_t n = t.numel();
  switch (t.dtype()) {
    case DType::kF32: {
      const float* p = t.data<float>();
      for (int64_t i = 0; i < n; ++i) {
        if (!std::isfinite(p[i])) return i;
      }
      return -1;
    }
    case DType::kBF16: {
      const bf16_t* p = t.data<bf16_t>();
      for (int64_t i = 0; i < n; ++i) {
        if ((p[i].bits & 0x7f80u) == 0x7f80u) return i;
      }
      return -1;
    }
    case DType::kF16: {
      const f16_t* p = t.data<f16_t>();
      for (int64_t i = 0; i < n; ++i) {
        if ((p[i].bits & 0x7c00u) == 0x7c00u) return i;
      }
      return -1;
    }
    default:
      return -1;
  }
}

// The value of an optional key, or nullptr.
const Json* find_key(const Json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// config.json

Gpt2Config read_hf_gpt2_config(const fs::path& dir) {
  const fs::path path = dir / kConfigFile;
  const std::string file = path.string();
  std::error_code ec;
  PENG_INPUT_CHECK(fs::is_directory(dir, ec), dir.string(),
                   ": no such folder (expected a Hugging Face GPT-2 checkpoint folder with ",
                   kConfigFile, " and ", kWeightsFile, ")");
  PENG_INPUT_CHECK(fs::exists(path, ec), file, ": no such file");
  PENG_INPUT_CHECK(fs::is_regular_file(path, ec), file, ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(file + ": cannot open for reading");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw IoError(file + ": read failed");

  Json j;
  try {
    j = Json::parse(text.str());
  } catch (const Json::exception& e) {
    throw InputError(file + ": not valid JSON: " + e.what());
  }
  PENG_INPUT_CHECK(j.is_object(), file, ": expected a JSON object, got a JSON ", j.type_name());

  // An integer field in [lo, hi]; nullopt when absent and not required.
  auto get_int = [&](const char* key, bool required, int64_t lo,
                     int64_t hi) -> std::optional<int64_t> {
    const Json* v = find_key(j, key);
    if (!v) {
      PENG_INPUT_CHECK(!required, file, ": missing field \"", key, "\"");
      return std::nullopt;
    }
    PENG_INPUT_CHECK(v->is_number_integer(), file, ": field \"", key, "\" must be an integer, got ",
                     v->dump());
    bool in_range = v->is_number_unsigned() ? v->get<uint64_t>() <= uint64_t(hi)
                                            : (v->get<int64_t>() >= lo && v->get<int64_t>() <= hi);
    PENG_INPUT_CHECK(in_range, file, ": field \"", key, "\" must be in [", lo, ", ", hi, "], got ",
                     v->dump());
    return v->get<int64_t>();
  };
  auto get_bool = [&](const char* key) -> std::optional<bool> {
    const Json* v = find_key(j, key);
    if (!v) return std::nullopt;
    PENG_INPUT_CHECK(v->is_boolean(), file, ": field \"", key, "\" must be true or false, got ",
                     v->dump());
    return v->get<bool>();
  };

  Gpt2Config cfg;
  cfg.n_layer = int(*get_int("n_layer", true, 1, INT_MAX));
  cfg.n_head = int(*get_int("n_head", true, 1, INT_MAX));
  cfg.n_embd = int(*get_int("n_embd", true, 1, INT_MAX));
  cfg.vocab_size = *get_int("vocab_size", true, 1, INT32_MAX);
  std::optional<int64_t> n_positions = get_int("n_positions", false, 1, INT_MAX);
  if (!n_positions) n_positions = get_int("n_ctx", false, 1, INT_MAX);
  PENG_INPUT_CHECK(n_positions.has_value(), file, ": missing field \"n_positions\" (or \"n_ctx\")");
  cfg.max_seq_len = int(*n_positions);
  PENG_INPUT_CHECK(cfg.n_embd % cfg.n_head == 0, file, ": field \"n_embd\" (", cfg.n_embd,
                   ") is not divisible by field \"n_head\" (", cfg.n_head, ")");

  if (const Json* v = find_key(j, "layer_norm_epsilon")) {
    PENG_INPUT_CHECK(v->is_number(), file, ": field \"layer_norm_epsilon\" must be a number, got ",
                     v->dump());
    double eps = v->get<double>();
    PENG_INPUT_CHECK(std::isfinite(eps) && eps > 0 && eps < 1, file,
                     ": field \"layer_norm_epsilon\" must be in (0, 1), got ", v->dump());
    cfg.layernorm_eps = float(eps);
  } else {
    cfg.layernorm_eps = 1e-5f;  // GPT2Config's default
  }

  if (const Json* v = find_key(j, "model_type")) {
    PENG_INPUT_CHECK(v->is_string() && v->get<std::string>() == "gpt2", file,
                     ": field \"model_type\" is ", v->dump(), ", expected \"gpt2\"");
  }
  if (const Json* v = find_key(j, "activation_function")) {
    std::string act = v->is_string() ? v->get<std::string>() : "";
    PENG_INPUT_CHECK(act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast", file,
                     ": field \"activation_function\" is ", v->dump(),
                     "; peng's GPT-2 uses the tanh GELU (\"gelu_new\" or \"gelu_pytorch_tanh\")");
  }
  PENG_INPUT_CHECK(
      get_bool("tie_word_embeddings").value_or(true), file,
      ": field \"tie_word_embeddings\" is false; peng's GPT-2 ties the LM head to wte");
  if (const Json* v = find_key(j, "n_inner"); v && !v->is_null()) {
    PENG_INPUT_CHECK(v->is_number_integer() && v->get<int64_t>() == 4 * int64_t(cfg.n_embd), file,
                     ": field \"n_inner\" is ", v->dump(),
                     "; peng's GPT-2 MLP has 4*n_embd = ", 4 * int64_t(cfg.n_embd), " (or null)");
  }
  PENG_INPUT_CHECK(get_bool("scale_attn_weights").value_or(true), file,
                   ": field \"scale_attn_weights\" is false; peng always scales attention");
  PENG_INPUT_CHECK(!get_bool("scale_attn_by_inverse_layer_idx").value_or(false), file,
                   ": field \"scale_attn_by_inverse_layer_idx\" is true; not supported");
  PENG_INPUT_CHECK(!get_bool("add_cross_attention").value_or(false), file,
                   ": field \"add_cross_attention\" is true; not supported");

  try {
    cfg.validate();
  } catch (const InputError& e) {
    throw InputError(file + ": " + e.what());
  }
  return cfg;
}

void write_hf_gpt2_config(const fs::path& dir, const Gpt2Config& cfg) {
  // The shortest decimal that reads back as the float (1e-5f -> 1e-05, not 9.99999974e-06).
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, cfg.layernorm_eps);
  *res.ptr = '\0';
  double eps = std::strtod(buf, nullptr);

  Json j = Json::object();
  j["model_type"] = "gpt2";
  j["architectures"] = Json::array({"GPT2LMHeadModel"});
  j["vocab_size"] = cfg.vocab_size;
  j["n_positions"] = cfg.max_seq_len;
  j["n_ctx"] = cfg.max_seq_len;
  j["n_embd"] = cfg.n_embd;
  j["n_layer"] = cfg.n_layer;
  j["n_head"] = cfg.n_head;
  j["layer_norm_epsilon"] = eps;
  j["activation_function"] = "gelu_new";
  j["tie_word_embeddings"] = true;
  write_file_atomic(dir / kConfigFile, j.dump(1));
}

// ---------------------------------------------------------------------------------------------
// parameter names and shapes

std::vector<std::string> gpt2_parameter_names(const Gpt2Config& cfg) {
  std::vector<std::string> names = {"wte.weight", "wpe.weight"};
  for (int i = 0; i < cfg.n_layer; ++i) {
    for (const char* p : kLayerParams) names.push_back("h." + std::to_string(i) + "." + p);
  }
  names.push_back("ln_f.weight");
  names.push_back("ln_f.bias");
  return names;
}

Shape gpt2_parameter_shape(const Gpt2Config& cfg, const std::string& name) {
  const int64_t c = cfg.n_embd;
  if (name == "wte.weight") return {cfg.vocab_size, c};
  if (name == "wpe.weight") return {cfg.max_seq_len, c};
  if (name == "ln_f.weight" || name == "ln_f.bias") return {c};
  if (auto layer = split_layer(name); layer && layer->first < cfg.n_layer) {
    const std::string& p = layer->second;
    if (p == "ln_1.weight" || p == "ln_1.bias" || p == "ln_2.weight" || p == "ln_2.bias" ||
        p == "attn.c_proj.bias" || p == "mlp.c_proj.bias") {
      return {c};
    }
    if (p == "attn.c_attn.weight") return {c, 3 * c};
    if (p == "attn.c_attn.bias") return {3 * c};
    if (p == "attn.c_proj.weight") return {c, c};
    if (p == "mlp.c_fc.weight") return {c, 4 * c};
    if (p == "mlp.c_fc.bias") return {4 * c};
    if (p == "mlp.c_proj.weight") return {4 * c, c};
  }
  throw InputError(
      detail::concat("'", name, "' is not a parameter of GPT-2 with n_layer=", cfg.n_layer));
}

// ---------------------------------------------------------------------------------------------
// model.safetensors

std::map<std::string, Tensor> load_hf_gpt2(const fs::path& dir, const Gpt2Config& cfg) {
  cfg.validate();
  const fs::path path = dir / kWeightsFile;
  const std::string file = path.string();
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    PENG_INPUT_CHECK(!fs::exists(dir / "model.safetensors.index.json", ec), file,
                     ": no such file (sharded checkpoints, model.safetensors.index.json, are "
                     "not supported)");
    PENG_INPUT_CHECK(!fs::exists(dir / "pytorch_model.bin", ec), file,
                     ": no such file (found pytorch_model.bin: convert it to safetensors; peng "
                     "does not read pickles)");
  }
  SafetensorsFile st = SafetensorsFile::open(path);

  const std::vector<std::string> names = gpt2_parameter_names(cfg);
  const std::set<std::string> expected(names.begin(), names.end());
  const Shape wte_shape = gpt2_parameter_shape(cfg, "wte.weight");
  std::map<std::string, std::string> stored_as;  // peng name -> name in the file
  std::vector<std::string> unknown;

  for (const std::string& stored : st.names()) {
    const SafetensorsFile::TensorInfo& ti = st.info(stored);
    if (stored == "lm_head.weight") {  // tied to wte: ignored, but must fit
      PENG_INPUT_CHECK(ti.shape == wte_shape, file, ": tensor 'lm_head.weight' has shape ",
                       shape_str(ti.shape), ", expected ", shape_str(wte_shape),
                       " (the LM head is tied to wte.weight; ", config_summary(cfg), ")");
      continue;
    }
    std::string name = stored.rfind(kPrefix, 0) == 0 ? stored.substr(12) : stored;
    if (auto layer = split_layer(name);
        layer && layer->first < cfg.n_layer &&
        (layer->second == "attn.bias" || layer->second == "attn.masked_bias")) {
      continue;  // causal-mask buffers of old HF checkpoints, not parameters
    }
    if (!expected.count(name)) {
      unknown.push_back(stored);
      continue;
    }
    auto [it, inserted] = stored_as.emplace(name, stored);
    PENG_INPUT_CHECK(inserted, file, ": parameter '", name, "' is stored twice, as '", it->second,
                     "' and as '", stored, "'");
    const Shape want = gpt2_parameter_shape(cfg, name);
    PENG_INPUT_CHECK(ti.shape == want, file, ": tensor '", stored, "' has shape ",
                     shape_str(ti.shape), ", expected ", shape_str(want), " (", config_summary(cfg),
                     ")");
    PENG_INPUT_CHECK(ti.dtype_name == "F32" || ti.dtype_name == "BF16" || ti.dtype_name == "F16",
                     file, ": tensor '", stored, "' has dtype ", ti.dtype_name,
                     "; GPT-2 weights must be F32, BF16 or F16");
  }
  if (!unknown.empty()) {
    std::ostringstream os;
    for (size_t i = 0; i < unknown.size() && i < 8; ++i)
      os << (i ? ", " : "") << "'" << unknown[i] << "'";
    if (unknown.size() > 8) os << " and " << unknown.size() - 8 << " more";
    throw InputError(detail::concat(file, ": ", unknown.size() == 1 ? "tensor " : "tensors ",
                                    os.str(), " not part of a GPT-2 model with ",
                                    config_summary(cfg), " (wrong file or config?)"));
  }
  std::vector<std::string> missing;
  for (const std::string& name : names) {
    if (!stored_as.count(name)) missing.push_back(name);
  }
  if (!missing.empty()) {
    std::ostringstream os;
    for (size_t i = 0; i < missing.size() && i < 8; ++i)
      os << (i ? ", " : "") << "'" << missing[i] << "'";
    if (missing.size() > 8) os << " and " << missing.size() - 8 << " more";
    throw InputError(detail::concat(file, ": missing ",
                                    missing.size() == 1 ? "parameter " : "parameters ", os.str(),
                                    " (", config_summary(cfg), ")"));
  }

  std::map<std::string, Tensor> out;
  for (const std::string& name : names) {
    const std::string& stored = stored_as.at(name);
    Tensor t = st.read(stored);
    if (t.dtype() != DType::kF32) t = t.to_dtype(DType::kF32);
    int64_t bad = first_non_finite(t);
    PENG_INPUT_CHECK(bad < 0, file, ": tensor '", stored, "' holds a non-finite value (",
                     t.data<float>()[bad], ") at flat index ", bad);
    out.emplace(name, std::move(t));
  }
  return out;
}

void save_hf_gpt2(const fs::path& dir, const Gpt2Config& cfg,
                  const std::map<std::string, Tensor>& params, DType dtype) {
  cfg.validate();
  const std::string where = dir.string();
  PENG_INPUT_CHECK(dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16, where,
                   ": Hugging Face GPT-2 export supports f32, bf16 and f16, not ",
                   dtype_name(dtype));
  const std::vector<std::string> names = gpt2_parameter_names(cfg);
  const std::set<std::string> expected(names.begin(), names.end());
  for (const auto& [name, t] : params) {
    PENG_INPUT_CHECK(expected.count(name), where, ": cannot export '", name,
                     "': not a parameter of GPT-2 with ", config_summary(cfg));
  }

  std::vector<std::pair<std::string, Tensor>> tensors;
  tensors.reserve(names.size());
  for (const std::string& name : names) {
    auto it = params.find(name);
    PENG_INPUT_CHECK(it != params.end() && it->second.defined(), where,
                     ": cannot export: parameter '", name, "' is missing");
    Tensor t = it->second;
    const Shape want = gpt2_parameter_shape(cfg, name);
    if (name == "wte.weight" && t.shape() == Shape{cfg.padded_vocab(), cfg.n_embd}) {
      t = t.slice(0, cfg.vocab_size);  // drop the padding rows
    }
    PENG_INPUT_CHECK(t.shape() == want, where, ": cannot export parameter '", name, "' of shape ",
                     shape_str(t.shape()), ", expected ", shape_str(want));
    PENG_INPUT_CHECK(is_float_dtype(t.dtype()), where, ": cannot export parameter '", name,
                     "' of dtype ", dtype_name(t.dtype()));
    if (!t.device().is_cpu()) t = t.to(Device::cpu());
    if (t.dtype() != dtype) t = t.to_dtype(dtype);
    int64_t bad = first_non_finite(t);
    PENG_INPUT_CHECK(bad < 0, where, ": cannot export parameter '", name, "': non-finite value in ",
                     dtype_name(dtype), " at flat index ", bad);
    tensors.emplace_back(name, std::move(t));
  }

  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir, ec)) {
    throw IoError(where + ": cannot create folder: " + (ec ? ec.message() : "not a folder"));
  }
  write_safetensors(dir / kWeightsFile, tensors, {{"format", "pt"}});
  write_hf_gpt2_config(dir, cfg);
}

}  // namespace peng
