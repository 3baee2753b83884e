#include "models/registry.h"

#include "core/error.h"
#include "models/deepseek/deepseek.h"
#include "models/gpt2/family.h"
#include "models/llama/llama.h"

namespace peng {

// The registered families: one line each.
const std::vector<const ModelFamily*>& model_families() {
  static const std::vector<const ModelFamily*> families = {
      &gpt2_family(),
      &llama_family(),
      &qwen2_family(),
      &qwen3_family(),
      &deepseek_moe_family(),
  };
  return families;
}

const ModelFamily& model_family(const std::string& name) {
  std::string known;
  for (const ModelFamily* f : model_families()) {
    if (f->name == name) return *f;
    known += (known.empty() ? "" : ", ") + f->name;
  }
  throw InputError("unknown model family '" + name + "' (known: " + known + ")");
}

DecoderConfig model_preset(const std::string& name) {
  std::string known;
  for (const ModelFamily* f : model_families()) {
    for (const std::string& p : f->presets) {
      if (p == name) return f->preset(name);
      known += (known.empty() ? "" : ", ") + p;
    }
  }
  throw InputError("unknown model preset '" + name + "' (known: " + known + ")");
}

DecoderConfig read_hf_config(const std::filesystem::path& dir) {
  const Json j = read_hf_config_json(dir);
  const JsonFields fields(j, (dir / "config.json").string());
  const std::string type = fields.string("model_type").value_or("gpt2");
  std::string known;
  for (const ModelFamily* f : model_families()) {
    for (const std::string& t : f->hf_model_types) {
      if (t != type) {
        known += (known.empty() ? "\"" : ", \"") + t + "\"";
        continue;
      }
      DecoderConfig c = f->from_hf_config(fields);
      try {
        c.validate();
      } catch (const InputError& e) {
        throw InputError(fields.file() + ": " + e.what());
      }
      return c;
    }
  }
  fields.fail("model_type",
              "is \"" + type + "\": peng has no such model family (known: " + known + ")");
}

void write_hf_config(const std::filesystem::path& dir, const DecoderConfig& c, DType weights) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  write_hf_config_json(dir, model_family(c.family).to_hf_config(c, weights));
}

std::map<std::string, Tensor> load_hf_model(const std::filesystem::path& dir,
                                            const DecoderConfig& c) {
  return read_hf_weights(dir, model_family(c.family).hf_weights(c));
}

void save_hf_model(const std::filesystem::path& dir, const DecoderConfig& c,
                   const std::map<std::string, Tensor>& params, DType dtype,
                   uint64_t max_shard_bytes) {
  write_hf_weights(dir, model_family(c.family).hf_weights(c), params, dtype, max_shard_bytes);
  write_hf_config(dir, c, dtype);
}

std::unique_ptr<CausalLM> build_model(const DecoderConfig& c, Backend& backend, const TpGroup& tp,
                                      const PipelineLayout& pipe, const ExpertGroup& experts) {
  return model_family(c.family).build(c, backend, tp, pipe, experts, /*allocate=*/true);
}

std::vector<Parameter> parameter_table(const DecoderConfig& c) {
  return model_family(c.family)
      .build(c, cpu_backend(), {}, {}, {}, /*allocate=*/false)
      ->parameters()
      .all();
}

int64_t count_parameters(const DecoderConfig& c, bool flops_only) {
  int64_t n = 0;
  for (const Parameter& p : parameter_table(c)) {
    if (p.tie_primary && p.trained && (p.flops || !flops_only)) {
      n += shape_numel(p.logical_shape);
    }
  }
  return n;
}

}  // namespace peng
