// Tokenizers: the byte tokenizer, and GPT-2 BPE on a small synthetic vocabulary whose expected
// ids are worked out by hand from the merge rules (tests cannot download GPT-2's files; see
// gpt2_bpe_real_test.cc for the real ones when scripts/fetch_corpus.sh has fetched them).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "peng/core/error.h"
#include "peng/core/tokenizer/gpt2_bpe.h"
#include "peng/core/tokenizer/tokenizer.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using Ids = std::vector<uint32_t>;
using peng::testing::TempDir;
using peng::testing::write_file;

// GPT-2's bytes_to_unicode, written out independently of the library: printable Latin-1 bytes
// stand for themselves, the other 68 bytes map to U+0100, U+0101, ... in byte order.
std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}
std::vector<std::string> byte_chars() {
  std::vector<std::string> out(256);
  uint32_t n = 0;
  for (uint32_t b = 0; b < 256; ++b) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    out[b] = utf8(printable ? b : 256 + n++);
  }
  return out;
}

// Synthetic vocabulary: byte b has id b; merges, in rank order, get ids 256, 257, ...; then eot.
const std::vector<std::pair<std::string, std::string>> kMerges = {
    {"Ġ", "t"},    // 256 "Ġt"   rank 0
    {"h", "e"},    // 257 "he"
    {"Ġt", "he"},  // 258 "Ġthe"
    {"i", "n"},    // 259 "in"
    {"Ġ", "a"},    // 260 "Ġa"
    {"'", "s"},    // 261 "'s"
    {"Ġ", "Ġ"},    // 262 "ĠĠ"   two spaces
    {"1", "2"},    // 263 "12"
    {"!", "!"},    // 264 "!!"
    {"Ã", "©"},    // 265 "Ã©"   = "é" (bytes C3 A9)
    {"t", "he"},   // 266 "the"
    {"a", "a"},    // 267 "aa"
    {"Ċ", "Ċ"},    // 268 "ĊĊ"   two newlines
    {"in", "g"},   // 269 "ing"
    {"aa", "aa"},  // 270 "aaaa"
};
constexpr uint32_t kEot = 271;

void write_synthetic_bpe(const fs::path& dir) {
  fs::create_directories(dir);
  const std::vector<std::string> chars = byte_chars();
  nlohmann::json enc = nlohmann::json::object();
  for (uint32_t b = 0; b < 256; ++b) enc[chars[b]] = b;
  std::string bpe = "#version: 0.2\n";
  uint32_t id = 256;
  for (const auto& [a, b] : kMerges) {
    enc[a + b] = id++;
    bpe += a + " " + b + "\n";
  }
  enc["<|endoftext|>"] = id;
  write_file(dir / "encoder.json", enc.dump());
  write_file(dir / "vocab.bpe", bpe);
}

class SyntheticBpe : public ::testing::Test {
 protected:
  void SetUp() override {
    write_synthetic_bpe(dir_.path());
    tok_ = make_tokenizer(dir_.path().string());
  }
  Ids enc(std::string_view s) { return tok_->encode(s); }

  TempDir dir_;
  std::unique_ptr<Tokenizer> tok_;
};

TEST(ByteTokenizer, IdentityOnBytes) {
  auto tok = make_tokenizer("byte");
  EXPECT_EQ(tok->vocab_size(), 256);
  EXPECT_FALSE(tok->eot_token().has_value());
  const std::string s = std::string("hi \xff\x00\xc3\xa9", 7);
  const Ids ids = tok->encode(s);
  EXPECT_EQ(ids, (Ids{104, 105, 32, 255, 0, 195, 169}));
  EXPECT_EQ(tok->decode(ids), s);
  EXPECT_THROW(tok->decode({256}), InputError);
}

TEST(Gpt2Bpe, BytesToUnicodeMatchesGpt2) {
  const std::vector<std::string> expected = byte_chars();
  for (int b = 0; b < 256; ++b) EXPECT_EQ(gpt2_bytes_to_unicode()[size_t(b)], expected[size_t(b)]);
  EXPECT_EQ(gpt2_bytes_to_unicode()[' '], "Ġ");
  EXPECT_EQ(gpt2_bytes_to_unicode()['\n'], "Ċ");
  EXPECT_EQ(gpt2_bytes_to_unicode()['A'], "A");
}

TEST_F(SyntheticBpe, Vocabulary) {
  EXPECT_EQ(tok_->vocab_size(), 272);
  EXPECT_EQ(tok_->eot_token(), kEot);
  const auto& bpe = dynamic_cast<const Gpt2Bpe&>(*tok_);
  EXPECT_EQ(bpe.token_id("Ġthe"), 258u);
  EXPECT_EQ(bpe.token_bytes(258), " the");
  EXPECT_FALSE(bpe.token_id("nope").has_value());
}

TEST_F(SyntheticBpe, Words) {
  EXPECT_EQ(enc("the"), (Ids{266}));   // h e -> he (rank 1), t he -> the (rank 10)
  EXPECT_EQ(enc(" the"), (Ids{258}));  // Ġ t (0), h e (1), Ġt he (2)
  EXPECT_EQ(enc("the the"), (Ids{266, 258}));
  EXPECT_EQ(enc("thing"), (Ids{116, 104, 269}));  // t h i n g: i n (3), in g (13)
  EXPECT_EQ(enc(" ing"), (Ids{32, 269}));
  EXPECT_EQ(enc("He"), (Ids{72, 101}));  // case matters: no "H e" merge
  EXPECT_EQ(enc(" a the"), (Ids{260, 258}));
  EXPECT_EQ(enc(""), Ids{});
}

TEST_F(SyntheticBpe, AllOccurrencesOfTheBestPairMergeLeftToRight) {
  EXPECT_EQ(enc("aaa"), (Ids{267, 97}));    // (aa)(a), not (a)(aa)
  EXPECT_EQ(enc("aaaa"), (Ids{270}));       // (aa)(aa), then aa aa
  EXPECT_EQ(enc("aaaaa"), (Ids{270, 97}));  // (aa)(aa)(a) -> (aaaa)(a)
}

TEST_F(SyntheticBpe, Contractions) {
  EXPECT_EQ(enc("it's"), (Ids{105, 116, 261}));            // "it" "'s"
  EXPECT_EQ(enc("we've"), (Ids{119, 101, 39, 118, 101}));  // "we" "'ve"
  EXPECT_EQ(enc("it'S"), (Ids{105, 116, 39, 83}));         // 'S is not a contraction
  EXPECT_EQ(enc("the's"), (Ids{266, 261}));
}

TEST_F(SyntheticBpe, Digits) {
  EXPECT_EQ(enc("12345"), (Ids{263, 51, 52, 53}));
  EXPECT_EQ(enc(" 12"), (Ids{32, 263}));
  EXPECT_EQ(enc("abc123"), (Ids{97, 98, 99, 263, 51}));  // letters and digits split
  EXPECT_EQ(enc("2112"), (Ids{50, 49, 263}));            // "2 1" has no merge; "1 2" does
}

TEST_F(SyntheticBpe, PunctuationRuns) {
  EXPECT_EQ(enc("!!!"), (Ids{264, 33}));
  EXPECT_EQ(enc("hi!!!?"), (Ids{104, 105, 264, 33, 63}));
  EXPECT_EQ(enc(" !!"), (Ids{32, 264}));  // " ?[^\s\p{L}\p{N}]+" takes the leading space
}

TEST_F(SyntheticBpe, WhitespaceRuns) {
  // "a  b": \s+(?!\S) backs off one space, so the last space joins " b".
  EXPECT_EQ(enc("a  b"), (Ids{97, 32, 32, 98}));
  EXPECT_EQ(enc("a   the"), (Ids{97, 262, 258}));  // "a" "  " " the"
  EXPECT_EQ(enc("a   "), (Ids{97, 262, 32}));      // trailing: one chunk "   " -> ĠĠ Ġ
  EXPECT_EQ(enc("    "), (Ids{262, 262}));
  EXPECT_EQ(enc(" "), (Ids{32}));
}

TEST_F(SyntheticBpe, Newlines) {
  EXPECT_EQ(enc("a\n\nb"), (Ids{97, 10, 10, 98}));   // "\n" (lookahead) then "\n" (\s+)
  EXPECT_EQ(enc("a\n\n"), (Ids{97, 268}));           // at the end: one chunk
  EXPECT_EQ(enc("a\n\n the"), (Ids{97, 268, 258}));  // "\n\n" then " the"
  EXPECT_EQ(enc("\tthe"), (Ids{9, 266}));
  EXPECT_EQ(enc("the\r\n"), (Ids{266, 13, 10}));
}

TEST_F(SyntheticBpe, MultiByteUnicode) {
  EXPECT_EQ(enc("é"), (Ids{265}));                  // C3 A9 -> Ã © -> merged
  EXPECT_EQ(enc("café"), (Ids{99, 97, 102, 265}));  // é is a letter: one chunk
  EXPECT_EQ(enc(" é"), (Ids{32, 265}));
  EXPECT_EQ(enc("中"), (Ids{0xE4, 0xB8, 0xAD}));          // CJK: its three byte tokens
  EXPECT_EQ(enc("the中"), (Ids{266, 0xE4, 0xB8, 0xAD}));  // one letter chunk: "the" merges
  EXPECT_EQ(enc("hi🙂"), (Ids{104, 105, 0xF0, 0x9F, 0x99, 0x82}));  // emoji: not a letter
  EXPECT_EQ(enc("٣"), (Ids{0xD9, 0xA3}));                             // Arabic-Indic digit: \p{N}
  // U+3000 (ideographic space) is whitespace but not " ": its own chunk, then "the".
  EXPECT_EQ(enc("a\u3000the"), (Ids{97, 0xE3, 0x80, 0x80, 266}));
}

TEST_F(SyntheticBpe, EndOfTextInTextIsPlainText) {
  const Ids ids = enc("<|endoftext|>");
  EXPECT_EQ(std::count(ids.begin(), ids.end(), kEot), 0);
  EXPECT_EQ(ids.front(), uint32_t('<'));
  EXPECT_EQ(tok_->decode({kEot}), "<|endoftext|>");
}

TEST_F(SyntheticBpe, InvalidUtf8IsEncodedByteWise) {
  EXPECT_EQ(enc("a\xff\xfe"
                "b"),
            (Ids{97, 255, 254, 98}));
  EXPECT_EQ(enc("x\xc3\xa9\xff"), (Ids{120, 265, 255}));
  EXPECT_EQ(enc("caf\xc3"), (Ids{99, 97, 102, 195}));  // cut-short é
  EXPECT_EQ(enc("\xc3\xc3\xa9"), (Ids{195, 265}));
  EXPECT_EQ(enc("\xed\xa0\x80"), (Ids{0xED, 0xA0, 0x80}));  // a surrogate: invalid
  EXPECT_EQ(enc("\xc0\xaf"), (Ids{0xC0, 0xAF}));            // overlong '/'
}

TEST_F(SyntheticBpe, DecodeRoundTrips) {
  const std::vector<std::string> texts = {
      "the quick brown fox's 12 dogs!!! aren't   here\n\n\tok  ",
      "héllo wörld 中文 日本語 🙂👍🏽 ١٢٣ Ⅷ e\u0301",
      std::string("nul\0byte", 8),
      "bad \xff\xfe utf8 \xc3 \xe4\xb8 end",
      "<|endoftext|> inside",
  };
  for (const std::string& s : texts) EXPECT_EQ(tok_->decode(enc(s)), s) << s;
  EXPECT_THROW(tok_->decode({272}), InputError);
}

TEST_F(SyntheticBpe, LongRunsStayFast) {
  // 200k 'a': a a -> aa everywhere, then aa aa -> aaaa: 50k tokens (quadratic BPE would crawl).
  EXPECT_EQ(enc(std::string(200000, 'a')), Ids(50000, 270));
  EXPECT_EQ(enc(std::string(100000, ' ')), Ids(50000, 262));
  const std::string mixed(300000, '\xff');
  EXPECT_EQ(enc(mixed).size(), mixed.size());
}

TEST_F(SyntheticBpe, ThreadSafe) {
  const std::string text = "the thing's 12 aaaaa café!!! \n\n the end";
  const Ids expected = enc(text);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      int good = 1;
      for (int i = 0; i < 200; ++i) good &= enc(text + std::to_string(i % 7)).size() > 0;
      good &= enc(text) == expected;
      ok[size_t(t)] = good;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok, (std::vector<int>{1, 1, 1, 1}));
}

// ---- errors --------------------------------------------------------------------------------

std::string input_error_of(const std::string& spec) {
  try {
    make_tokenizer(spec);
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected InputError for " << spec;
  return "";
}

TEST(TokenizerErrors, UnknownSpec) {
  const std::string msg = input_error_of("/no/such/tokenizer");
  EXPECT_NE(msg.find("/no/such/tokenizer"), std::string::npos) << msg;
}

TEST(TokenizerErrors, MissingFiles) {
  TempDir dir;
  write_synthetic_bpe(dir.path());
  fs::remove(dir / "vocab.bpe");
  std::string msg = input_error_of(dir.path().string());
  EXPECT_NE(msg.find("vocab.bpe"), std::string::npos) << msg;
  fs::remove(dir / "encoder.json");
  msg = input_error_of(dir.path().string());
  EXPECT_NE(msg.find("encoder.json"), std::string::npos) << msg;
}

TEST(TokenizerErrors, MalformedEncoderJson) {
  TempDir dir;
  write_synthetic_bpe(dir.path());
  const std::string path = (dir / "encoder.json").string();
  for (const std::string& bad : {std::string("{\"a\": 0,"), std::string("[1, 2]"),
                                 std::string("{\"a\": \"zero\"}"), std::string("{\"a\": 5}")}) {
    write_file(path, bad);
    const std::string msg = input_error_of(dir.path().string());
    EXPECT_NE(msg.find(path), std::string::npos) << bad << " -> " << msg;
  }
  // Every byte needs a token.
  nlohmann::json enc = nlohmann::json::object();
  for (uint32_t b = 0; b < 255; ++b) enc[byte_chars()[b]] = b;
  write_file(path, enc.dump());
  write_file(dir / "vocab.bpe", "#version: 0.2\n");
  const std::string msg = input_error_of(dir.path().string());
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("byte 255"), std::string::npos) << msg;
}

TEST(TokenizerErrors, MalformedVocabBpe) {
  TempDir dir;
  write_synthetic_bpe(dir.path());
  const std::string path = (dir / "vocab.bpe").string();
  write_file(path, "#version: 0.2\nĠ t\nh e x\n");
  std::string msg = input_error_of(dir.path().string());
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;
  write_file(path, "#version: 0.2\nq z\n");  // "qz" is not in encoder.json
  msg = input_error_of(dir.path().string());
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
}

}  // namespace
}  // namespace peng
