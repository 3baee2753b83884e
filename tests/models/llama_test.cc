// The Llama family (llama, qwen2, qwen3): Hugging Face folders read and written bit for bit
// (single and sharded), config.json and weight errors naming the key or tensor, gradients
// against finite differences, presets with the published parameter counts, RoPE's Llama 3
// frequency rule.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "peng/core/error.h"
#include "peng/core/io/safetensors.h"
#include "peng/models/decoder/decoder.h"
#include "peng/models/nn/rope.h"
#include "peng/models/registry.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using testing::read_file;
using testing::TempDir;
using testing::write_file;

const std::vector<std::string> kCases = {"llama-tiny", "qwen2-odd", "qwen3-tiny", "llama-deep4"};

fs::path case_dir(const std::string& name) { return testing::reference_dir() / name; }

// The InputError message of `f` ("" when it succeeds).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(LlamaHf, ReadsTheReferenceConfigs) {
  const DecoderConfig llama = read_hf_config(case_dir("llama-tiny"));
  EXPECT_EQ(llama.family, "llama");
  EXPECT_EQ(llama.n_head, 4);
  EXPECT_EQ(llama.n_kv_head, 2);
  EXPECT_EQ(llama.head_dim, 16);
  EXPECT_EQ(llama.ffn_hidden, 160);
  EXPECT_FALSE(llama.tied_embeddings);
  EXPECT_FALSE(llama.qkv_bias);
  const DecoderConfig qwen2 = read_hf_config(case_dir("qwen2-odd"));
  EXPECT_EQ(qwen2.family, "qwen2");
  EXPECT_TRUE(qwen2.qkv_bias);
  EXPECT_FALSE(qwen2.attn_out_bias);
  EXPECT_TRUE(qwen2.tied_embeddings);
  EXPECT_EQ(qwen2.rope.theta, 1e6);
  EXPECT_EQ(qwen2.norm_eps, 1e-6f);
  const DecoderConfig qwen3 = read_hf_config(case_dir("qwen3-tiny"));
  EXPECT_EQ(qwen3.family, "qwen3");
  EXPECT_TRUE(qwen3.qk_norm);
  EXPECT_EQ(qwen3.head_dim, 16);  // != 64 / 8
  EXPECT_EQ(qwen3.q_width(), 128);
}

// Import then export reproduces the reference folders byte for byte (the weights in
// Hugging Face order, config.json with the same keys and values).
TEST(LlamaHf, ImportExportIsBitExact) {
  for (const std::string& name : kCases) {
    const DecoderConfig c = read_hf_config(case_dir(name));
    const auto params = load_hf_model(case_dir(name), c);
    TempDir tmp;
    save_hf_model(tmp / "out", c, params);
    EXPECT_EQ(read_file(tmp / "out" / "model.safetensors"),
              read_file(case_dir(name) / "model.safetensors"))
        << name;
    EXPECT_EQ(read_file(tmp / "out" / "config.json"), read_file(case_dir(name) / "config.json"))
        << name;
  }
}

// BF16 and F16 exports say so in config.json, read back exactly (widened to f32), and
// export again to the same bytes.
TEST(LlamaHf, HalfPrecisionExportsRoundTrip) {
  const DecoderConfig c = read_hf_config(case_dir("qwen2-odd"));
  const auto params = load_hf_model(case_dir("qwen2-odd"), c);
  for (const auto& [dtype, torch_name] : std::vector<std::pair<DType, std::string>>{
           {DType::kBF16, "bfloat16"}, {DType::kF16, "float16"}}) {
    TempDir tmp;
    save_hf_model(tmp / "a", c, params, dtype);
    const nlohmann::json config = nlohmann::json::parse(read_file(tmp / "a" / "config.json"));
    EXPECT_EQ(config["torch_dtype"], torch_name);
    const auto half = load_hf_model(tmp / "a", read_hf_config(tmp / "a"));
    save_hf_model(tmp / "b", c, half, dtype);
    EXPECT_EQ(read_file(tmp / "a" / "model.safetensors"),
              read_file(tmp / "b" / "model.safetensors"))
        << torch_name;
    const Tensor& w = half.at("layers.0.self_attn.qkv_proj.weight");
    EXPECT_EQ(w.dtype(), DType::kF32);
    EXPECT_EQ(w.shape(), (Shape{48 + 2 * 24, 48}));
  }
}

// Above the size limit the weights go to shards with an index, as save_pretrained writes
// them; reading the shards gives the same tensors, and a single-file export of those is
// the reference file again. A later export replaces the other layout's files.
TEST(LlamaHf, ShardedFoldersRoundTrip) {
  const DecoderConfig c = read_hf_config(case_dir("llama-tiny"));
  const auto params = load_hf_model(case_dir("llama-tiny"), c);
  TempDir tmp;
  save_hf_model(tmp / "sharded", c, params, DType::kF32, 100'000);
  EXPECT_FALSE(fs::exists(tmp / "sharded" / "model.safetensors"));
  const nlohmann::json index =
      nlohmann::json::parse(read_file(tmp / "sharded" / "model.safetensors.index.json"));
  const SafetensorsFile original =
      SafetensorsFile::open(case_dir("llama-tiny") / "model.safetensors");
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(),
            original.file_size() - original.data_offset());
  std::set<std::string> files;
  uint64_t total = 0;
  for (const auto& [tensor, file] : index["weight_map"].items()) {
    files.insert(file.get<std::string>());
    total += SafetensorsFile::open(tmp / "sharded" / file.get<std::string>()).info(tensor).nbytes();
  }
  EXPECT_GE(files.size(), 4u);
  EXPECT_EQ(total, index["metadata"]["total_size"].get<uint64_t>());
  EXPECT_TRUE(files.count("model-00001-of-0000" + std::to_string(files.size()) + ".safetensors"));
  const auto back = load_hf_model(tmp / "sharded", read_hf_config(tmp / "sharded"));
  ASSERT_EQ(back.size(), params.size());
  save_hf_model(tmp / "sharded", c, back);  // the same folder, one file again
  EXPECT_EQ(read_file(tmp / "sharded" / "model.safetensors"),
            read_file(case_dir("llama-tiny") / "model.safetensors"));
  EXPECT_FALSE(fs::exists(tmp / "sharded" / "model.safetensors.index.json"));
  for (const std::string& f : files) EXPECT_FALSE(fs::exists(tmp / "sharded" / f)) << f;
}

// A config.json edited one way or another: the message names the file and the key.
std::string config_error(const std::string& name,
                         const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::ordered_json j =
      nlohmann::ordered_json::parse(read_file(case_dir(name) / "config.json"));
  nlohmann::json plain = j;
  edit(plain);
  TempDir tmp;
  write_file(tmp / "config.json", plain.dump(1));
  return error_of([&] { read_hf_config(tmp.path()); });
}

TEST(LlamaHf, UnsupportedConfigsNameTheKey) {
  const auto expect_key = [](const std::string& msg, const std::string& key) {
    EXPECT_TRUE(contains(msg, "config.json")) << msg;
    EXPECT_TRUE(contains(msg, "\"" + key + "\"")) << "'" << key << "' not in: " << msg;
  };
  expect_key(config_error("llama-tiny", [](auto& j) { j["model_type"] = "mistral"; }),
             "model_type");
  expect_key(config_error("qwen2-odd", [](auto& j) { j["use_sliding_window"] = true; }),
             "use_sliding_window");
  expect_key(config_error("llama-tiny", [](auto& j) { j["sliding_window"] = 4096; }),
             "sliding_window");
  expect_key(config_error("llama-tiny",
                          [](auto& j) {
                            j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
                          }),
             "rope_scaling");
  expect_key(config_error("llama-tiny", [](auto& j) { j["hidden_act"] = "gelu"; }), "hidden_act");
  expect_key(config_error("llama-tiny", [](auto& j) { j["attention_dropout"] = 0.1; }),
             "attention_dropout");
  expect_key(config_error("llama-tiny", [](auto& j) { j["pretraining_tp"] = 2; }),
             "pretraining_tp");
  expect_key(config_error("qwen3-tiny",
                          [](auto& j) {
                            j["layer_types"] = {"full_attention", "sliding_attention"};
                          }),
             "layer_types");
  expect_key(config_error("llama-tiny", [](auto& j) { j.erase("hidden_size"); }), "hidden_size");
  expect_key(config_error("llama-tiny", [](auto& j) { j["num_hidden_layers"] = "2"; }),
             "num_hidden_layers");
  const std::string kv = config_error("llama-tiny", [](auto& j) { j["num_key_value_heads"] = 3; });
  EXPECT_TRUE(contains(kv, "n_kv_head (3)")) << kv;
  expect_key(config_error("llama-tiny", [](auto& j) { j["num_key_value_heads"] = 0; }),
             "num_key_value_heads");
  // Transformers v5's rope_parameters: with the old keys too, or per layer type: refused.
  expect_key(config_error("llama-tiny",
                          [](auto& j) {
                            j["rope_parameters"] = {{"rope_theta", 500000.0}};
                          }),
             "rope_parameters");
  expect_key(config_error("llama-tiny",
                          [](auto& j) {
                            j.erase("rope_theta");
                            j["rope_parameters"] = {{"full_attention", {{"rope_theta", 1e4}}}};
                          }),
             "rope_parameters");
  // What is accepted: Llama 3's frequency rule, "default" rope_scaling, disabled windows.
  EXPECT_EQ(config_error("llama-tiny",
                         [](auto& j) {
                           j["rope_scaling"] = {{"factor", 8.0},
                                                {"low_freq_factor", 1.0},
                                                {"high_freq_factor", 4.0},
                                                {"original_max_position_embeddings", 8192},
                                                {"rope_type", "llama3"}};
                         }),
            "");
  EXPECT_EQ(config_error("qwen2-odd",
                         [](auto& j) {
                           j["use_sliding_window"] = false;
                           j["sliding_window"] = 131072;
                         }),
            "");
}

// Transformers v5 writes RoPE's base and rule as rope_parameters.
TEST(LlamaHf, ReadsRopeParametersOfTransformersV5) {
  nlohmann::json j = nlohmann::json::parse(read_file(case_dir("llama-tiny") / "config.json"));
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_theta", 500000.0},  {"rope_type", "llama3"},
                          {"factor", 8.0},           {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  TempDir tmp;
  write_file(tmp / "config.json", j.dump(1));
  const DecoderConfig c = read_hf_config(tmp.path());
  EXPECT_EQ(c.rope.theta, 500000.0);
  EXPECT_EQ(c.rope.scaling, "llama3");
  EXPECT_EQ(c.rope.original_max_position, 8192);
}

// A copy of a reference folder's weights with `edit` applied to the tensor list.
using Named = std::vector<std::pair<std::string, Tensor>>;
std::string weights_error(const std::string& name, const std::function<void(Named&)>& edit) {
  SafetensorsFile f = SafetensorsFile::open(case_dir(name) / "model.safetensors");
  Named tensors;
  for (const std::string& n : f.names()) tensors.emplace_back(n, f.read(n));
  edit(tensors);
  TempDir tmp;
  fs::copy_file(case_dir(name) / "config.json", tmp / "config.json");
  write_safetensors(tmp / "model.safetensors", tensors, {{"format", "pt"}});
  const DecoderConfig c = read_hf_config(tmp.path());
  return error_of([&] { load_hf_model(tmp.path(), c); });
}

TEST(LlamaHf, WrongWeightsNameTheTensor) {
  const auto drop = [](const std::string& victim) {
    return
        [victim](Named& t) { std::erase_if(t, [&](const auto& e) { return e.first == victim; }); };
  };
  std::string msg = weights_error("llama-tiny", drop("model.layers.1.self_attn.k_proj.weight"));
  EXPECT_TRUE(contains(msg, "missing")) << msg;
  EXPECT_TRUE(contains(msg, "'model.layers.1.self_attn.k_proj.weight'")) << msg;
  msg = weights_error("llama-tiny", drop("lm_head.weight"));  // untied: required
  EXPECT_TRUE(contains(msg, "'lm_head.weight'")) << msg;
  msg = weights_error("qwen2-odd", [](Named& t) {
    for (auto& [n, v] : t) {
      if (n == "model.layers.0.self_attn.v_proj.bias") v = Tensor::zeros({48});
    }
  });
  EXPECT_TRUE(contains(msg, "'model.layers.0.self_attn.v_proj.bias'")) << msg;
  EXPECT_TRUE(contains(msg, "[48]")) << msg;
  EXPECT_TRUE(contains(msg, "[24]")) << msg;
  msg = weights_error("qwen3-tiny", [](Named& t) {
    t.emplace_back("lm_head.weight", Tensor::zeros({400, 32}));
  });
  EXPECT_TRUE(contains(msg, "'lm_head.weight'")) << msg;  // tied: must fit if present
  msg = weights_error("qwen3-tiny", [](Named& t) {
    t.emplace_back("model.layers.0.mlp.extra", Tensor::zeros({2}));
  });
  EXPECT_TRUE(contains(msg, "'model.layers.0.mlp.extra'")) << msg;
  // A shard holding a tensor its index does not list.
  {
    const DecoderConfig c = read_hf_config(case_dir("llama-tiny"));
    TempDir tmp;
    save_hf_model(tmp.path(), c, load_hf_model(case_dir("llama-tiny"), c), DType::kF32, 100'000);
    nlohmann::json index = nlohmann::json::parse(read_file(tmp / "model.safetensors.index.json"));
    index["weight_map"].erase("model.norm.weight");
    write_file(tmp / "model.safetensors.index.json", index.dump(2));
    msg = error_of([&] { load_hf_model(tmp.path(), c); });
    EXPECT_TRUE(contains(msg, "'model.norm.weight' is not listed in")) << msg;
  }
  // Tolerated: a tied head stored anyway, old RoPE buffers.
  EXPECT_EQ(weights_error("qwen3-tiny",
                          [](Named& t) {
                            t.emplace_back("lm_head.weight", t.front().second);
                            t.emplace_back("model.layers.1.self_attn.rotary_emb.inv_freq",
                                           Tensor::zeros({8}));
                          }),
            "");
}

std::pair<Tensor, Tensor> random_batch(int64_t b, int64_t t, int64_t vocab, uint64_t seed) {
  std::mt19937 gen{uint32_t(seed)};
  Tensor x = Tensor::empty({b, t}, DType::kI32), y = Tensor::empty({b, t}, DType::kI32);
  for (int64_t i = 0; i < b * t; ++i) {
    x.data<int32_t>()[i] = int32_t(gen() % vocab);
    y.data<int32_t>()[i] = int32_t(gen() % vocab);
  }
  return {x, y};
}

// The directional derivative of the mean loss along a random unit direction per parameter
// equals grad . d (central differences in f32: a loose but bug-revealing tolerance).
void expect_gradients_match(DecoderConfig c) {
  model_family(c.family).complete(c);
  DecoderModel m(c, cpu_backend());
  m.init_random(3);
  for (Parameter& p : m.parameters().all()) {  // norms away from 1, biases away from 0
    if (p.init.kind != ParamInit::kNormal) {
      std::mt19937 gen(7);
      std::normal_distribution<float> nd(p.init.kind == ParamInit::kOnes ? 1.0f : 0.0f, 0.2f);
      for (int64_t i = 0; i < p.value.numel(); ++i) p.value.data<float>()[i] = nd(gen);
    }
  }
  auto [x, y] = random_batch(2, 7, c.vocab_size, 4);
  m.parameters().zero_grads();
  m.forward(x, y);
  m.backward(1.0f / 14.0f);
  std::mt19937 gen(5);
  std::normal_distribution<double> nd;
  for (const Parameter& p : m.parameters().all()) {
    const int64_t n = shape_numel(p.logical_shape);  // the real vocabulary rows
    std::vector<float> d(static_cast<size_t>(n));
    double norm2 = 0, analytic = 0;
    for (float& v : d) {
      v = float(nd(gen));
      norm2 += double(v) * v;
    }
    for (int64_t i = 0; i < n; ++i) {
      d[size_t(i)] = float(d[size_t(i)] / std::sqrt(norm2));
      analytic += double(d[size_t(i)]) * p.grad.data<float>()[i];
    }
    const float eps = 1e-2f;
    std::vector<float> saved(p.value.data<float>(), p.value.data<float>() + n);
    auto loss_at = [&](float s) {
      for (int64_t i = 0; i < n; ++i)
        p.value.data<float>()[i] = saved[size_t(i)] + s * d[size_t(i)];
      return m.forward(x, y);
    };
    const double numeric = (loss_at(eps) - loss_at(-eps)) / (2.0 * eps);
    loss_at(0);
    EXPECT_NEAR(analytic, numeric, 2e-4 + 1e-2 * std::abs(numeric)) << c.family << " " << p.name;
  }
}

DecoderConfig tiny(const std::string& family) {
  DecoderConfig c = model_family(family).custom();
  c.n_layer = 2;
  c.n_embd = 24;
  c.n_head = 4;
  c.n_kv_head = 2;
  c.ffn_hidden = 40;
  c.vocab_size = 150;
  c.max_seq_len = 7;
  return c;
}

TEST(LlamaModel, GradientsMatchFiniteDifferences) {
  expect_gradients_match(tiny("llama"));  // untied head
  DecoderConfig qwen2 = tiny("qwen2");
  qwen2.tied_embeddings = true;
  expect_gradients_match(qwen2);
  DecoderConfig qwen3 = tiny("qwen3");
  qwen3.head_dim = 10;  // != 24 / 4
  qwen3.n_kv_head = 1;
  expect_gradients_match(qwen3);
  DecoderConfig llama3 = tiny("llama");
  llama3.rope = {.theta = 500000, .scaling = "llama3", .factor = 8, .original_max_position = 4};
  expect_gradients_match(llama3);
}

// The published parameter counts of the models the presets name.
TEST(LlamaModel, PresetsHaveThePublishedShapes) {
  for (const auto& [preset, params] :
       std::vector<std::pair<std::string, int64_t>>{{"llama3.2-1b", 1'235'814'400},
                                                    {"llama3.1-8b", 8'030'261'248},
                                                    {"llama3.1-70b", 70'553'706'496},
                                                    {"qwen2.5-0.5b", 494'032'768},
                                                    {"qwen2.5-7b", 7'615'616'512},
                                                    {"qwen3-0.6b", 596'049'920},
                                                    {"qwen3-8b", 8'190'735'360}}) {
    EXPECT_EQ(count_parameters(model_preset(preset)), params) << preset;
  }
  const DecoderConfig l8 = model_preset("llama3.1-8b");
  EXPECT_EQ(l8.rope.scaling, "llama3");
  EXPECT_EQ(l8.rope.factor, 8);
  EXPECT_FALSE(l8.tied_embeddings);
  EXPECT_TRUE(model_preset("qwen2.5-0.5b").qkv_bias);
  EXPECT_TRUE(model_preset("qwen3-8b").qk_norm);
  const std::string msg = error_of([] { model_preset("llama4-400b"); });
  EXPECT_TRUE(contains(msg, "llama4-400b") && contains(msg, "qwen3-8b")) << msg;
}

// Hugging Face's _compute_llama3_parameters on Llama 3.1's numbers (head_dim 128, theta
// 500000, factor 8, low 1, high 4, original 8192): high frequencies kept, low ones / 8,
// the band between interpolated.
TEST(LlamaModel, Llama3RopeFrequencies) {
  const RopeConfig rope{.theta = 500000,
                        .scaling = "llama3",
                        .factor = 8,
                        .low_freq_factor = 1,
                        .high_freq_factor = 4,
                        .original_max_position = 8192};
  const std::vector<double> inv = rope_inv_freq(rope, 128);
  ASSERT_EQ(inv.size(), 64u);
  const auto plain = [](int i) { return 1.0 / std::pow(500000.0, 2.0 * i / 128.0); };
  EXPECT_DOUBLE_EQ(inv[0], 1.0);
  EXPECT_DOUBLE_EQ(inv[20], plain(20));      // wavelength 2 pi / inv < 8192 / 4: kept
  EXPECT_DOUBLE_EQ(inv[63], plain(63) / 8);  // wavelength > 8192: divided by the factor
  // i = 32: wavelength 2 pi / plain(32) ~ 4.4e3 lies in (2048, 8192): interpolated.
  const double w = 2 * M_PI / plain(32), smooth = (8192 / w - 1) / (4 - 1);
  ASSERT_GT(w, 2048);
  ASSERT_LT(w, 8192);
  EXPECT_DOUBLE_EQ(inv[32], (1 - smooth) * plain(32) / 8 + smooth * plain(32));
}

}  // namespace
}  // namespace peng
