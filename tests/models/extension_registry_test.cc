// Extending peng from a program's own code: a custom op (core/custom_op.h), a feed-forward
// layer (models/nn/feed_forward.h) and a model family (models/registry.h) registered
// without editing peng, and the errors that name what is missing or taken.
#include <gtest/gtest.h>

#include "peng/core/backend.h"
#include "peng/core/custom_op.h"
#include "peng/core/error.h"
#include "peng/models/nn/feed_forward.h"
#include "peng/models/nn/mlp.h"
#include "peng/models/registry.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

using testing::input_error_of;

TEST(CustomOp, RegisteredPerDeviceTypeAndCalled) {
  register_op("test_negate", DeviceType::kCpu, [](Backend&, OpArgs in, OpOutputs out) {
    for (int64_t i = 0; i < in[0]->numel(); ++i)
      out[0]->data<float>()[i] = -in[0]->data<float>()[i];
  });
  EXPECT_TRUE(has_op("test_negate", DeviceType::kCpu));
  EXPECT_FALSE(has_op("test_negate", DeviceType::kCuda));
  const Tensor x = Tensor::from_vector(std::vector<float>{1, -2, 3}, {3});
  Tensor y = Tensor::empty({3});
  call_op(backend_for(Device::cpu()), "test_negate", {&x}, {&y});
  EXPECT_EQ(y.data<float>()[1], 2.0f);
  EXPECT_NE(input_error_of([] {
              register_op("test_negate", DeviceType::kCpu, [](Backend&, OpArgs, OpOutputs) {});
            }).find("already registered for cpu"),
            std::string::npos);
  const std::string missing =
      input_error_of([&] { call_op(backend_for(Device::cpu()), "test_nothing", {&x}, {&y}); });
  EXPECT_NE(missing.find("op 'test_nothing' has no cpu implementation"), std::string::npos)
      << missing;
}

// The built-in MLP under another name: built once per layer of a model that selects it.
TEST(FeedForwardRegistry, SelectedByConfigAndRefusedWhenUnknown) {
  static int built = 0;
  register_feed_forward("test_mlp", [](ParameterSet& params, const std::string& prefix,
                                       const DecoderConfig& c, const TpGroup& tp) {
    ++built;
    return std::make_unique<Mlp>(params, prefix, c, tp);
  });
  DecoderConfig c = model_family("llama").custom();
  c.n_layer = 2, c.n_head = 2, c.n_embd = 16, c.ffn_hidden = 24, c.vocab_size = 64;
  c.max_seq_len = 8;
  model_family("llama").complete(c);
  const std::vector<Parameter> builtin = parameter_table(c);
  EXPECT_EQ(built, 0);
  c.ffn_layer = "test_mlp";
  const std::vector<Parameter> ours = parameter_table(c);
  EXPECT_EQ(built, 2);  // one per layer
  ASSERT_EQ(ours.size(), builtin.size());
  for (size_t i = 0; i < ours.size(); ++i) EXPECT_EQ(ours[i].name, builtin[i].name);
  c.ffn_layer = "test_none";
  const std::string e = input_error_of([&] { parameter_table(c); });
  EXPECT_NE(e.find("no feed-forward layer 'test_none'"), std::string::npos) << e;
  EXPECT_NE(e.find("test_mlp"), std::string::npos) << e;
}

TEST(ModelFamilyRegistry, FamilyFromUserCodeIsFoundAndClashesRefused) {
  static const ModelFamily copy = [] {
    ModelFamily f = model_family("llama");
    f.name = "test_llama_copy";
    f.hf_model_types = {"test_llama_copy"};
    f.presets = {};
    return f;
  }();
  register_model_family(copy);
  EXPECT_EQ(&model_family("test_llama_copy"), &copy);
  EXPECT_EQ(model_families().back(), &copy);
  EXPECT_NE(input_error_of([] { register_model_family(copy); }).find("already registered"),
            std::string::npos);
  static const ModelFamily reads_llama = [] {
    ModelFamily f = model_family("llama");
    f.name = "test_reads_llama";
    f.presets = {};
    return f;
  }();
  EXPECT_NE(input_error_of([] {
              register_model_family(reads_llama);
            }).find("model_type 'llama' of 'test_reads_llama' is already read by 'llama'"),
            std::string::npos);
}

}  // namespace
}  // namespace peng
