// Hugging Face GPT-2 folders: config.json parsing, model.safetensors loading in every accepted
// form (prefix, tied head, mask buffers, BF16/F16), rejection of wrong files, and bit-exact
// export -> import round trips.
#include "peng/models/gpt2/hf_checkpoint.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "peng/core/error.h"
#include "peng/core/io/safetensors.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using peng::testing::read_file;
using peng::testing::reference_dir;
using peng::testing::TempDir;
using peng::testing::write_file;
using Named = std::vector<std::pair<std::string, Tensor>>;

fs::path tiny_dir() { return reference_dir() / "gpt2-tiny"; }

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string bytes_of(const Tensor& t) {
  return std::string(static_cast<const char*>(t.raw_data()), t.nbytes());
}

// The reference checkpoint's tensors, in file order.
Named reference_tensors() {
  SafetensorsFile f = SafetensorsFile::open(tiny_dir() / "model.safetensors");
  Named out;
  for (const auto& n : f.names()) out.emplace_back(n, f.read(n));
  return out;
}

// A checkpoint folder with the reference config.json and `tensors` as model.safetensors.
void make_checkpoint(const fs::path& dir, const Named& tensors) {
  fs::create_directories(dir);
  fs::copy_file(tiny_dir() / "config.json", dir / "config.json",
                fs::copy_options::overwrite_existing);
  write_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});
}

// The InputError message of load_hf_gpt2 on `dir` ("" if it loads).
std::string load_error(const fs::path& dir, const Gpt2Config& cfg) {
  try {
    load_hf_gpt2(dir, cfg);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

std::string config_error(const fs::path& dir, const std::string& json) {
  fs::create_directories(dir);
  write_file(dir / "config.json", json);
  try {
    read_hf_gpt2_config(dir);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

void expect_equal_params(const std::map<std::string, Tensor>& a,
                         const std::map<std::string, Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    const Tensor& u = b.at(name);
    EXPECT_EQ(t.shape(), u.shape()) << name;
    EXPECT_EQ(t.dtype(), u.dtype()) << name;
    EXPECT_EQ(bytes_of(t), bytes_of(u)) << name;
  }
}

TEST(HfCheckpoint, ReadsReferenceConfig) {
  Gpt2Config cfg = read_hf_gpt2_config(tiny_dir());
  EXPECT_EQ(cfg.n_layer, 2);
  EXPECT_EQ(cfg.n_head, 4);
  EXPECT_EQ(cfg.n_embd, 64);
  EXPECT_EQ(cfg.vocab_size, 256);
  EXPECT_EQ(cfg.max_seq_len, 16);
  EXPECT_EQ(cfg.layernorm_eps, 1e-5f);
}

TEST(HfCheckpoint, ParameterNamesAndShapes) {
  Gpt2Config cfg = read_hf_gpt2_config(tiny_dir());
  std::vector<std::string> names = gpt2_parameter_names(cfg);
  ASSERT_EQ(names.size(), 28u);
  // Same order as the reference file (and the Python script that wrote it).
  SafetensorsFile f = SafetensorsFile::open(tiny_dir() / "model.safetensors");
  EXPECT_EQ(names, f.names());
  for (const auto& n : names) EXPECT_EQ(gpt2_parameter_shape(cfg, n), f.info(n).shape) << n;

  cfg.vocab_size = 50257;  // the real vocabulary, never padded, in HF layout
  EXPECT_EQ(gpt2_parameter_shape(cfg, "wte.weight"), (Shape{50257, 64}));
  EXPECT_EQ(gpt2_parameter_shape(cfg, "h.1.mlp.c_fc.weight"), (Shape{64, 256}));
  EXPECT_EQ(gpt2_parameter_shape(cfg, "h.1.mlp.c_proj.weight"), (Shape{256, 64}));
  EXPECT_EQ(gpt2_parameter_shape(cfg, "h.0.attn.c_attn.bias"), (Shape{192}));
  for (const char* bad : {"h.2.ln_1.weight", "h.01.ln_1.weight", "h.-1.ln_1.weight",
                          "h.0.attn.bias", "lm_head.weight", "transformer.wte.weight", "h..x"}) {
    EXPECT_THROW(gpt2_parameter_shape(cfg, bad), InputError) << bad;
  }
}

TEST(HfCheckpoint, LoadsReference) {
  Gpt2Config cfg = read_hf_gpt2_config(tiny_dir());
  std::map<std::string, Tensor> params = load_hf_gpt2(tiny_dir(), cfg);
  ASSERT_EQ(params.size(), 28u);
  for (const auto& [name, want] : reference_tensors()) {
    const Tensor& got = params.at(name);
    EXPECT_EQ(got.dtype(), DType::kF32);
    EXPECT_TRUE(got.device().is_cpu());
    EXPECT_EQ(got.shape(), want.shape()) << name;
    EXPECT_EQ(bytes_of(got), bytes_of(want)) << name;
  }
}

TEST(HfCheckpoint, AcceptsPrefixTiedHeadAndMaskBuffers) {
  Gpt2Config cfg = read_hf_gpt2_config(tiny_dir());
  std::map<std::string, Tensor> want = load_hf_gpt2(tiny_dir(), cfg);
  Named ref = reference_tensors();
  TempDir tmp;
  for (bool prefix : {true, false}) {
    // GPT2LMHeadModel.save_pretrained layout: transformer.* plus lm_head.weight, and the
    // causal-mask buffers older transformers versions saved.
    Named t;
    std::string pre = prefix ? "transformer." : "";
    for (const auto& [name, v] : ref) t.emplace_back(pre + name, v);
    for (int i = 0; i < cfg.n_layer; ++i) {
      std::string h = pre + "h." + std::to_string(i) + ".attn.";
      t.emplace_back(h + "bias", Tensor::zeros({1, 1, 16, 16}));
      t.emplace_back(h + "masked_bias", Tensor::from_vector<float>({-1e4f}, {}));
    }
    t.emplace_back("lm_head.weight", ref[0].second);
    fs::path dir = tmp / (prefix ? "prefixed" : "plain");
    make_checkpoint(dir, t);
    std::map<std::string, Tensor> got = load_hf_gpt2(dir, cfg);
    expect_equal_params(got, want);
  }
}

TEST(HfCheckpoint, LoadsBf16AndF16AndReexportsSameBytes) {
  Gpt2Config cfg = read_hf_gpt2_config(tiny_dir());
  Named ref = reference_tensors();
  TempDir tmp;
  for (DType dt : {DType::kBF16, DType::kF16}) {
    Named half;
    for (const auto& [name, v] : ref) half.emplace_back(name, v.to_dtype(dt));
    fs::path in = tmp / (std::string("in_") + dtype_name(dt));
    make_checkpoint(in, half);

    std::map<std::string, Tensor> params = load_hf_gpt2(in, cfg);
    for (const auto& [name, h] : half) {
      const Tensor& got = params.at(name);
      ASSERT_EQ(got.dtype(), DType::kF32);
      EXPECT_EQ(bytes_of(got), bytes_of(h.to_dtype(DType::kF32))) << name;  // exact widening
    }

    fs::path out = tmp / (std::string("out_") + dtype_name(dt));
    save_hf_gpt2(out, cfg, params, dt);
    SafetensorsFile a = SafetensorsFile::open(in / "model.safetensors");
    SafetensorsFile b = SafetensorsFile::open(out / "model.safetensors");
    ASSERT_EQ(a.names(), b.names());
    for (const auto& n : a.names()) {
      EXPECT_EQ(b.info(n).dtype_name, safetensors_dtype_name(dt)) << n;
      EXPECT_EQ(a.read_bytes(n), b.read_bytes(n)) << n;
    }
    EXPECT_EQ(read_file(out / "model.safetensors"), read_file(in / "model.safetensors"));
  }
}

TEST(HfCheckpoint, RejectsMissingTensor) {
  Gpt2Config cfg = read_hf_gpt2_config(tiny_dir());
  Named t;
  for (const auto& [name, v] : reference_tensors()) {
    if (name != "h.1.mlp.c_fc.bias") t.emplace_back(name, v);
  }
  TempDir tmp;
  make_checkpoint(tmp.path(), t);
  std::string msg = load_error(tmp.path(), cfg);
  EXPECT_TRUE(contains(msg, "model.safetensors")) << msg;
  EXPECT_TRUE(contains(msg, "'h.1.mlp.c_fc.bias'")) << msg;
  EXPECT_TRUE(contains(msg, "missing")) << msg;

  // A config with more layers than the file.
  Gpt2Config deeper = cfg;
  deeper.n_layer = 3;
  msg = load_error(tiny_dir(), deeper);
  EXPECT_TRUE(contains(msg, "'h.2.ln_1.weight'")) << msg;
}

TEST(HfCheckpoint, RejectsShapeNotMatchingConfig) {
  Gpt2Config cfg = read_hf_gpt2_config(tiny_dir());
  Gpt2Config wrong = cfg;
  wrong.vocab_size = 300;
  std::string msg = load_error(tiny_dir(), wrong);
  EXPECT_TRUE(contains(msg, "model.safetensors")) << msg;
  EXPECT_TRUE(contains(msg, "'wte.weight'")) << msg;
  EXPECT_TRUE(contains(msg, "[256, 64]")) << msg;
  EXPECT_TRUE(contains(msg, "[300, 64]")) << msg;

  // A Linear-layout (transposed) c_attn weight, as a naive converter might write.
  Named t = reference_tensors();
  for (auto& [name, v] : t) {
    if (name == "h.0.attn.c_attn.weight") v = v.view({192, 64});
  }
  TempDir tmp;
  make_checkpoint(tmp.path(), t);
  msg = load_error(tmp.path(), cfg);
  EXPECT_TRUE(contains(msg, "'h.0.attn.c_attn.weight'")) << msg;
  EXPECT_TRUE(contains(msg, "[192, 64]")) << msg;
  EXPECT_TRUE(contains(msg, "[64, 192]")) << msg;
}

TEST(HfCheckpoint, RejectsForeignTensorsAndDtypes) {
  Gpt2Config cfg = read_hf_gpt2_config(tiny_dir());
  TempDir tmp;
  auto variant = [&](const std::string& sub, auto&& edit) {
    Named t = reference_tensors();
    edit(t);
    make_checkpoint(tmp / sub, t);
    return load_error(tmp / sub, cfg);
  };
  std::string msg =
      variant("extra", [](Named& t) { t.emplace_back("foo.weight", Tensor::zeros({2})); });
  EXPECT_TRUE(contains(msg, "'foo.weight'")) << msg;
  EXPECT_TRUE(contains(msg, "model.safetensors")) << msg;

  msg = variant("far_buffer", [](Named& t) {
    t.emplace_back("h.7.attn.bias", Tensor::zeros({1, 1, 16, 16}));
  });
  EXPECT_TRUE(contains(msg, "'h.7.attn.bias'")) << msg;

  msg = variant("lm_head", [](Named& t) {
    t.emplace_back("lm_head.weight", Tensor::zeros({255, 64}));
  });
  EXPECT_TRUE(contains(msg, "'lm_head.weight'")) << msg;
  EXPECT_TRUE(contains(msg, "[255, 64]")) << msg;

  msg = variant("f64", [](Named& t) { t[3].second = t[3].second.to_dtype(DType::kF64); });
  EXPECT_TRUE(contains(msg, "'h.0.ln_1.bias'")) << msg;
  EXPECT_TRUE(contains(msg, "F64")) << msg;

  msg =
      variant("twice", [](Named& t) { t.emplace_back("transformer.ln_f.bias", t.back().second); });
  EXPECT_TRUE(contains(msg, "'ln_f.bias'")) << msg;
  EXPECT_TRUE(contains(msg, "twice")) << msg;

  msg = variant("nan", [](Named& t) {
    Tensor w = t[1].second.clone();
    w.data<float>()[5] = std::numeric_limits<float>::quiet_NaN();
    t[1].second = w;
  });
  EXPECT_TRUE(contains(msg, "'wpe.weight'")) << msg;
  EXPECT_TRUE(contains(msg, "non-finite")) << msg;

  // No model.safetensors at all, but a pickle.
  fs::create_directories(tmp / "pickle");
  write_file(tmp / "pickle" / "pytorch_model.bin", "x");
  msg = load_error(tmp / "pickle", cfg);
  EXPECT_TRUE(contains(msg, "model.safetensors")) << msg;
  EXPECT_TRUE(contains(msg, "pytorch_model.bin")) << msg;
}

TEST(HfCheckpoint, ConfigErrorsNameTheField) {
  TempDir tmp;
  const std::string good = read_file(tiny_dir() / "config.json");
  auto without = [&](const std::string& key) {
    std::string s = good;
    size_t at = s.find("\"" + key + "\"");
    size_t end = s.find('\n', at);
    return s.substr(0, at) + "\"removed_" + s.substr(at + 1, end - at - 1) + s.substr(end);
  };
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return s.replace(at, from.size(), to);
  };

  std::string msg = config_error(tmp / "a", without("n_head"));
  EXPECT_TRUE(contains(msg, "config.json")) << msg;
  EXPECT_TRUE(contains(msg, "\"n_head\"")) << msg;
  EXPECT_TRUE(contains(msg, "missing")) << msg;

  msg = config_error(tmp / "b", replaced("\"n_layer\": 2", "\"n_layer\": \"2\""));
  EXPECT_TRUE(contains(msg, "config.json")) << msg;
  EXPECT_TRUE(contains(msg, "\"n_layer\"")) << msg;

  msg = config_error(tmp / "c", replaced("\"n_embd\": 64", "\"n_embd\": 64.5"));
  EXPECT_TRUE(contains(msg, "\"n_embd\"")) << msg;

  msg = config_error(tmp / "d", replaced("\"n_embd\": 64", "\"n_embd\": 66"));
  EXPECT_TRUE(contains(msg, "\"n_embd\"")) << msg;
  EXPECT_TRUE(contains(msg, "\"n_head\"")) << msg;

  msg = config_error(tmp / "e", replaced("gelu_new", "relu"));
  EXPECT_TRUE(contains(msg, "\"activation_function\"")) << msg;

  msg = config_error(tmp / "f",
                     replaced("\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false"));
  EXPECT_TRUE(contains(msg, "\"tie_word_embeddings\"")) << msg;

  msg = config_error(tmp / "g", replaced("\"gpt2\"", "\"llama\""));
  EXPECT_TRUE(contains(msg, "\"model_type\"")) << msg;

  msg = config_error(tmp / "h", replaced("\"vocab_size\": 256", "\"vocab_size\": -256"));
  EXPECT_TRUE(contains(msg, "\"vocab_size\"")) << msg;

  msg = config_error(tmp / "i", good.substr(0, good.size() / 2));
  EXPECT_TRUE(contains(msg, "config.json")) << msg;
  EXPECT_TRUE(contains(msg, "JSON")) << msg;

  std::string no_positions = without("n_positions");
  no_positions.replace(no_positions.find("\"n_ctx\""), 7, "\"nctx!\"");
  msg = config_error(tmp / "j", no_positions);
  EXPECT_TRUE(contains(msg, "\"n_positions\"")) << msg;

  msg = config_error(tmp / "k", replaced("\"n_head\": 4", "\"n_head\": 4, \"n_inner\": 100"));
  EXPECT_TRUE(contains(msg, "\"n_inner\"")) << msg;

  fs::create_directories(tmp / "empty");
  try {
    read_hf_gpt2_config(tmp / "empty");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_TRUE(contains(e.what(), "config.json")) << e.what();
  }

  // Accepted variants: n_ctx without n_positions; no layer_norm_epsilon (HF default 1e-5);
  // gelu_pytorch_tanh; n_inner null.
  EXPECT_EQ(config_error(tmp / "ok1", without("n_positions")), "");
  EXPECT_EQ(read_hf_gpt2_config(tmp / "ok1").max_seq_len, 16);
  EXPECT_EQ(config_error(tmp / "ok2", without("layer_norm_epsilon")), "");
  EXPECT_EQ(read_hf_gpt2_config(tmp / "ok2").layernorm_eps, 1e-5f);
  EXPECT_EQ(config_error(tmp / "ok3", replaced("gelu_new", "gelu_pytorch_tanh")), "");
  EXPECT_EQ(
      config_error(tmp / "ok4", replaced("\"n_head\": 4", "\"n_head\": 4, \"n_inner\": null")), "");
}

TEST(HfCheckpoint, ExportImportRoundTripIsBitExact) {
  Gpt2Config cfg = read_hf_gpt2_config(tiny_dir());
  std::map<std::string, Tensor> params = load_hf_gpt2(tiny_dir(), cfg);
  TempDir tmp;
  fs::path out = tmp / "nested" / "export";
  save_hf_gpt2(out, cfg, params);
  // Same bytes as the Python reference writer, and the same config.json keys and values.
  EXPECT_EQ(read_file(out / "model.safetensors"), read_file(tiny_dir() / "model.safetensors"));
  EXPECT_EQ(read_file(out / "config.json"), read_file(tiny_dir() / "config.json"));
  Gpt2Config back = read_hf_gpt2_config(out);
  EXPECT_EQ(back.n_layer, cfg.n_layer);
  EXPECT_EQ(back.n_head, cfg.n_head);
  EXPECT_EQ(back.n_embd, cfg.n_embd);
  EXPECT_EQ(back.vocab_size, cfg.vocab_size);
  EXPECT_EQ(back.max_seq_len, cfg.max_seq_len);
  EXPECT_EQ(back.layernorm_eps, cfg.layernorm_eps);
  expect_equal_params(load_hf_gpt2(out, back), params);

  // Arbitrary f32 bit patterns (incl. subnormals and -0) survive export -> import.
  std::mt19937 rng(7);
  std::map<std::string, Tensor> random;
  for (const auto& [name, t] : params) {
    Tensor r = Tensor::empty(t.shape());
    for (int64_t i = 0; i < r.numel(); ++i) {
      uint32_t bits;
      do {
        bits = uint32_t(rng());
      } while ((bits & 0x7f800000u) == 0x7f800000u);  // finite only
      std::memcpy(&r.data<float>()[i], &bits, 4);
    }
    random.emplace(name, r);
  }
  save_hf_gpt2(out, cfg, random);  // overwrites
  expect_equal_params(load_hf_gpt2(out, cfg), random);
  EXPECT_FALSE(fs::exists(out / "model.safetensors.tmp"));
}

TEST(HfCheckpoint, ExportDropsVocabPaddingAndChecksParams) {
  Gpt2Config cfg = read_hf_gpt2_config(tiny_dir());
  cfg.vocab_size = 250;  // padded_vocab() = 256
  std::map<std::string, Tensor> params;
  for (const auto& name : gpt2_parameter_names(cfg)) {
    params[name] = Tensor::zeros(gpt2_parameter_shape(cfg, name));
  }
  Tensor padded = Tensor::zeros({cfg.padded_vocab(), cfg.n_embd});
  padded.data<float>()[0] = 0.5f;
  params["wte.weight"] = padded;
  TempDir tmp;
  save_hf_gpt2(tmp / "ok", cfg, params, DType::kBF16);
  SafetensorsFile f = SafetensorsFile::open(tmp / "ok" / "model.safetensors");
  EXPECT_EQ(f.info("wte.weight").shape, (Shape{250, 64}));
  EXPECT_EQ(f.info("wte.weight").dtype_name, "BF16");
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(load_hf_gpt2(tmp / "ok", cfg).at("wte.weight").data<float>()[0], 0.5f);

  auto save_error = [&](std::map<std::string, Tensor> p, DType dt = DType::kF32) -> std::string {
    try {
      save_hf_gpt2(tmp / "bad", cfg, p, dt);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  };
  auto missing = params;
  missing.erase("h.0.ln_2.bias");
  EXPECT_TRUE(contains(save_error(missing), "'h.0.ln_2.bias'"));
  auto extra = params;
  extra["h.0.attn.bias"] = Tensor::zeros({1});
  EXPECT_TRUE(contains(save_error(extra), "'h.0.attn.bias'"));
  auto shaped = params;
  shaped["ln_f.weight"] = Tensor::zeros({65});
  EXPECT_TRUE(contains(save_error(shaped), "'ln_f.weight'"));
  EXPECT_TRUE(contains(save_error(params, DType::kI32), "i32"));
  auto big = params;
  big["wpe.weight"] = Tensor::zeros({16, 64});
  big["wpe.weight"].data<float>()[0] = 1e6f;  // overflows f16
  std::string msg = save_error(big, DType::kF16);
  EXPECT_TRUE(contains(msg, "'wpe.weight'")) << msg;
  EXPECT_TRUE(contains(msg, "non-finite")) << msg;
  EXPECT_FALSE(fs::exists(tmp / "bad" / "model.safetensors"));
}

}  // namespace
}  // namespace peng
