// The model a config asks for: presets with sizes overridden (the sizes a preset derives,
// such as GPT-2's head width and MLP, follow; the ones it sets apart stay), custom sizes
// of each family, and conflicts with a Hugging Face folder named by field.
#include "peng/launch/model_setup.h"

#include <gtest/gtest.h>

#include "peng/launch/config.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

DecoderConfig resolve(const std::vector<std::string>& sets) {
  proto::TrainConfig c = default_train_config();
  for (const std::string& s : sets) set_config_field(s, c);
  return resolve_model_config(c);
}

std::string error_of(const std::vector<std::string>& sets) {
  try {
    resolve(sets);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(ModelSetup, PresetOverridesDeriveWhatThePresetDerives) {
  const DecoderConfig wide = resolve({"model.preset=gpt2-124m", "model.n_embd=1536"});
  EXPECT_EQ(wide.head_dim, 128);
  EXPECT_EQ(wide.ffn_hidden, 6144);
  EXPECT_EQ(wide.n_kv_head, 12);
  const DecoderConfig llama = resolve({"model.preset=llama3.1-8b", "model.n_head=16"});
  EXPECT_EQ(llama.head_dim, 256);      // derived: n_embd / n_head
  EXPECT_EQ(llama.n_kv_head, 8);       // set apart: kept
  EXPECT_EQ(llama.ffn_hidden, 14336);  // set apart: kept
  const DecoderConfig qwen3 = resolve({"model.preset=qwen3-0.6b", "model.n_layer=2"});
  EXPECT_EQ(qwen3.head_dim, 128);  // not 1024 / 16
  EXPECT_EQ(qwen3.n_layer, 2);
  EXPECT_EQ(resolve({"model.preset=qwen3-8b", "model.n_head=16"}).head_dim, 128);
}

TEST(ModelSetup, CustomSizesOfEachFamily) {
  const DecoderConfig llama =
      resolve({"model.family=llama", "model.n_layer=2", "model.n_head=4", "model.n_kv_head=2",
               "model.n_embd=64", "model.ffn_hidden=160", "model.vocab_size=256",
               "model.tie_embeddings=true"});
  EXPECT_EQ(llama.family, "llama");
  EXPECT_EQ(llama.head_dim, 16);
  EXPECT_TRUE(llama.tied_embeddings);
  EXPECT_EQ(llama.max_seq_len, 128);  // training.seq_len
  const std::vector<std::string> gpt2 = {"model.n_layer=2", "model.n_head=4", "model.n_embd=64",
                                         "model.vocab_size=256"};
  EXPECT_EQ(resolve(gpt2).family, "gpt2");
  std::vector<std::string> bad = gpt2;
  bad.push_back("model.n_kv_head=2");
  EXPECT_NE(error_of(bad).find("model.n_kv_head = 2: GPT-2 has multi-head attention"),
            std::string::npos)
      << error_of(bad);
  EXPECT_NE(error_of({"model.family=llama", "model.n_layer=2", "model.n_head=4", "model.n_embd=64",
                      "model.vocab_size=256"})
                .find("model.ffn_hidden must be > 0"),
            std::string::npos);
  EXPECT_NE(error_of({"model.family=mamba"}).find("unknown model family 'mamba'"),
            std::string::npos);
}

TEST(ModelSetup, ConflictsWithTheFolderNameTheField) {
  const std::string dir = (testing::reference_dir() / "qwen3-tiny").string();
  EXPECT_EQ(resolve({"model.init_from=" + dir}).family, "qwen3");
  const std::string e = error_of({"model.init_from=" + dir, "model.n_kv_head=4"});
  EXPECT_NE(e.find("model.n_kv_head = 4 conflicts with"), std::string::npos) << e;
  EXPECT_NE(error_of({"model.init_from=" + dir, "model.family=llama"})
                .find("model.family = llama conflicts with"),
            std::string::npos);
}

}  // namespace
}  // namespace peng
