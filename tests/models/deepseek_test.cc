// The deepseek_moe family: its config.json read and written back with the reference's keys,
// its presets' parameter counts (all and activated) by hand, and the roles its layers give
// their parameters (router, selection-bias buffer, routed and shared experts).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "peng/launch/model_setup.h"
#include "peng/models/registry.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;

TEST(DeepSeekMoe, ConfigJsonRoundTripsWithTheReferenceKeys) {
  for (const char* name : {"moe-tiny", "moe-sigmoid"}) {
    const fs::path dir = testing::reference_dir() / name;
    const DecoderConfig c = read_hf_config(dir);
    EXPECT_EQ(c.family, "deepseek_moe");
    testing::TempDir tmp;
    write_hf_config(tmp.path(), c);
    EXPECT_EQ(describe(read_hf_config(tmp.path())), describe(c)) << name;
    const nlohmann::json ours = nlohmann::json::parse(testing::read_file(tmp / "config.json"));
    const nlohmann::json ref = nlohmann::json::parse(testing::read_file(dir / "config.json"));
    for (const auto& [key, value] : ref.items()) {
      ASSERT_TRUE(ours.contains(key)) << name << ": " << key;
      EXPECT_EQ(ours[key], value) << name << ": " << key;
    }
  }
  const DecoderConfig tiny = read_hf_config(testing::reference_dir() / "moe-tiny");
  EXPECT_EQ(tiny.moe.experts, 8);
  EXPECT_EQ(tiny.moe.topk, 2);
  EXPECT_EQ(tiny.moe.expert_hidden, 32);
  EXPECT_EQ(tiny.moe.shared, 1);
  EXPECT_EQ(tiny.moe.first_dense, 1);
  EXPECT_FALSE(tiny.moe.sigmoid);
  EXPECT_TRUE(tiny.moe.norm_topk);
  EXPECT_DOUBLE_EQ(tiny.moe.aux_alpha, 0.01);
}

// Qwen3-30B-A3B's shapes in this family (no q/k norms: 48 x 2 x 128 = 12,288 fewer than the
// published 30,532,122,624). Per layer: q 4096 x 2048 and o 2048 x 4096 = 8,388,608 each,
// k and v 512 x 2048 = 1,048,576 each, two norms 4,096, the router 128 x 2048 = 262,144,
// 128 experts of 3 x 2048 x 768 = 4,718,592: 623,120,384; x 48 + two embeddings of
// 151936 x 2048 + the final norm = 30,532,110,336. Activated: 8 experts per layer
// (56,889,344 per layer) + the head and final norm = 3,041,855,488 (3.35B with the looked-up
// input embedding: Qwen's "A3B").
TEST(DeepSeekMoe, PresetsCountEveryAndActivatedParameters) {
  const DecoderConfig q = model_preset("qwen3-30b-a3b-moe");
  EXPECT_EQ(count_parameters(q), 30532110336);
  EXPECT_EQ(active_parameters(q), 3041855488);
  const DecoderConfig v3 = model_preset("deepseek-v3-moe");
  EXPECT_EQ(v3.moe.experts, 256);
  EXPECT_TRUE(v3.moe.sigmoid);
  EXPECT_EQ(v3.moe.first_dense, 3);
  EXPECT_GT(v3.moe.bias_update_speed, 0);
}

TEST(DeepSeekMoe, LayersGiveTheirParametersRoles) {
  const DecoderConfig c = read_hf_config(testing::reference_dir() / "moe-tiny");
  int experts = 0, buffers = 0;
  for (const Parameter& p : parameter_table(c)) {
    if (p.name == "layers.1.mlp.gate.weight") {
      EXPECT_TRUE(p.weight_decay && p.trained && !p.expert_parallel);  // the router
    }
    if (p.name == "layers.1.mlp.gate.e_score_correction_bias") {
      ++buffers;
      EXPECT_FALSE(p.trained || p.weight_decay || p.flops);
      EXPECT_EQ(p.init.kind, ParamInit::kZeros);
    }
    if (p.name.starts_with("layers.1.mlp.experts.")) {
      ++experts;
      EXPECT_TRUE(p.expert_parallel);
    }
    if (p.name.starts_with("layers.1.mlp.shared_experts.") || p.name.starts_with("layers.0.mlp.")) {
      EXPECT_FALSE(p.expert_parallel) << p.name;
    }
  }
  EXPECT_EQ(experts, 8 * 2);  // gate_up and down of each
  EXPECT_EQ(buffers, 1);
}

TEST(DeepSeekMoe, ConfigsThatMakeNoModelAreRefused) {
  DecoderConfig c = model_family("deepseek_moe").custom();
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  c.vocab_size = 64;
  c.moe.experts = 4;
  c.moe.topk = 5;
  c.moe.expert_hidden = 8;
  EXPECT_THROW(model_family("deepseek_moe").complete(c), InputError);
  c.moe.topk = 2;
  c.moe.first_dense = 2;  // every layer dense
  EXPECT_THROW(model_family("deepseek_moe").complete(c), InputError);
  c.moe.first_dense = 1;
  model_family("deepseek_moe").complete(c);
  EXPECT_THROW(c.check_expert_parallel(3), InputError);
  c.check_expert_parallel(4);
}

}  // namespace
}  // namespace peng
