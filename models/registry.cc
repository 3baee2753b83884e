#include "peng/models/registry.h"

#include "peng/core/error.h"
#include "peng/models/deepseek/deepseek.h"
#include "peng/models/gpt2/family.h"
#include "peng/models/llama/llama.h"

namespace peng {

namespace {

// The built-in families (one line each), then those programs registered.
std::vector<const ModelFamily*>& registry() {
  static std::vector<const ModelFamily*> families = {
      &gpt2_family(), &llama_family(), &qwen2_family(), &qwen3_family(), &deepseek_moe_family(),
  };
  return families;
}

}  // namespace

const std::vector<const ModelFamily*>& model_families() { return registry(); }

void register_model_family(const ModelFamily& family) {
  PENG_INPUT_CHECK(!family.name.empty(), "register_model_family: the family has no name");
  PENG_INPUT_CHECK((family.presets.empty() || family.preset) && family.custom && family.complete &&
                       family.from_hf_config && family.to_hf_config && family.hf_weights &&
                       family.build,
                   "register_model_family: family '", family.name,
                   "' lacks one of preset, custom, complete, from_hf_config, to_hf_config, "
                   "hf_weights, build");
  for (const ModelFamily* f : registry()) {
    PENG_INPUT_CHECK(f->name != family.name, "register_model_family: a family named '", family.name,
                     "' is already registered");
    for (const std::string& t : family.hf_model_types) {
      for (const std::string& u : f->hf_model_types) {
        PENG_INPUT_CHECK(t != u, "register_model_family: model_type '", t, "' of '", family.name,
                         "' is already read by '", f->name, "'");
      }
    }
    for (const std::string& p : family.presets) {
      for (const std::string& q : f->presets) {
        PENG_INPUT_CHECK(p != q, "register_model_family: preset '", p, "' of '", family.name,
                         "' is already one of '", f->name, "'");
      }
    }
  }
  registry().push_back(&family);
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
