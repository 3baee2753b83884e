// GPT-2 BPE against OpenAI's real files, when scripts/fetch_corpus.sh has put them in
// data/gpt2_bpe (skipped otherwise). Expected ids are GPT-2's (openai/gpt-2 encoder.py).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "peng/core/tokenizer/gpt2_bpe.h"
#include "peng/core/tokenizer/tokenizer.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using Ids = std::vector<uint32_t>;

class RealGpt2Bpe : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const fs::path dir = peng::testing::source_dir() / "data" / "gpt2_bpe";
    if (fs::exists(dir / "encoder.json") && fs::exists(dir / "vocab.bpe")) {
      tok_ = make_tokenizer(dir.string()).release();
    }
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override {
    if (tok_ == nullptr) GTEST_SKIP() << "data/gpt2_bpe absent: run scripts/fetch_corpus.sh";
  }
  static Tokenizer* tok_;
};
Tokenizer* RealGpt2Bpe::tok_ = nullptr;

TEST_F(RealGpt2Bpe, Vocabulary) {
  EXPECT_EQ(tok_->vocab_size(), 50257);
  EXPECT_EQ(tok_->eot_token(), 50256u);
  EXPECT_EQ(tok_->decode({50256}), "<|endoftext|>");
}

TEST_F(RealGpt2Bpe, WellKnownIds) {
  EXPECT_EQ(tok_->encode("Hello world"), (Ids{15496, 995}));
  EXPECT_EQ(tok_->encode(" the"), (Ids{262}));
  EXPECT_EQ(tok_->encode("hello"), (Ids{31373}));
  EXPECT_EQ(tok_->encode("Hello world!"), (Ids{15496, 995, 0}));
  EXPECT_EQ(tok_->encode("The quick brown fox jumps over the lazy dog."),
            (Ids{464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13}));
  EXPECT_EQ(tok_->encode("It's 2024: GPT-2's tokenizer isn't   hard.\n\nRight?"),
            (Ids{1026, 338, 48609, 25,  402,  11571, 12,  17,  338,   11241, 7509,
                 2125, 470, 220,   220, 1327, 13,    198, 198, 11028, 30}));
  EXPECT_EQ(tok_->encode("naïve café, 東京 🙂"),
            (Ids{2616, 38776, 40304, 11, 10545, 251, 109, 12859, 105, 32485}));
  // U+180E is not whitespace for GPT-2 (PCRE2's own \s would say it is).
  EXPECT_EQ(tok_->encode("\u180e!\u180e x"), (Ids{157, 254, 236, 0, 157, 254, 236, 2124}));
  // The special token's text is ordinary text to the encoder, as in GPT-2's encoder.py.
  EXPECT_EQ(tok_->encode("<|endoftext|>"), (Ids{27, 91, 437, 1659, 5239, 91, 29}));
}

TEST_F(RealGpt2Bpe, RoundTrips) {
  for (const std::string& s : {std::string("Hello, world! 你好，世界 🙂👍🏽 — naïve "
                                           "façade\n\n\ttabs   and spaces  "),
                               std::string("bytes \xff\xfe\xc3 invalid"), std::string(1000, ' ')}) {
    EXPECT_EQ(tok_->decode(tok_->encode(s)), s);
  }
}

}  // namespace
}  // namespace peng
