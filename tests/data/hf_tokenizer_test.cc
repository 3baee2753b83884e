// HfTokenizer (Hugging Face tokenizer.json) on small hand-written tokenizer.json files whose
// expected ids follow from Hugging Face's rules by hand; hf_tokenizer_real_test.cc checks the
// real Llama 3 and Qwen3 files against a JavaScript peer.
#include "peng/core/tokenizer/hf_tokenizer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "peng/core/error.h"
#include "peng/core/tokenizer/gpt2_bpe.h"
#include "peng/core/tokenizer/split_regex.h"
#include "peng/core/tokenizer/tokenizer.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Ids = std::vector<uint32_t>;
using Pieces = std::vector<std::string>;
using peng::testing::TempDir;
using peng::testing::write_file;

// Llama 3's pre-tokenizer pattern (Qwen's differs only in \p{N} instead of \p{N}{1,3}).
constexpr const char* kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// A tokenizer.json in Llama 3's shape: byte b has id b, merge results get 256, 257, ... in
// order, then `extra` tokens, then the added tokens (ids as Hugging Face assigns them).
struct TinyHf {
  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<std::string> extra;  // more vocabulary tokens (byte-level spelling)
  json added = json::array();
  json root = json::object();

  TinyHf() {
    root["version"] = "1.0";
    root["truncation"] = nullptr;
    root["padding"] = nullptr;
    root["normalizer"] = nullptr;
    root["pre_tokenizer"] = {{"type", "Sequence"},
                             {"pretokenizers",
                              {{{"type", "Split"},
                                {"pattern", {{"Regex", kLlama3Pattern}}},
                                {"behavior", "Isolated"},
                                {"invert", false}},
                               {{"type", "ByteLevel"},
                                {"add_prefix_space", false},
                                {"trim_offsets", true},
                                {"use_regex", false}}}}};
    root["post_processor"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}};
    root["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}};
    root["model"] = {{"type", "BPE"},
                     {"dropout", nullptr},
                     {"unk_token", nullptr},
                     {"continuing_subword_prefix", nullptr},
                     {"end_of_word_suffix", nullptr},
                     {"fuse_unk", false},
                     {"byte_fallback", false},
                     {"ignore_merges", false}};
  }
  // Adds a token with the next id after the vocabulary and the tokens added so far.
  TinyHf& add(const std::string& content, bool special, json flags = json::object()) {
    json t = {{"id", next_id()},   {"content", content}, {"single_word", false},
              {"lstrip", false},   {"rstrip", false},    {"normalized", !special},
              {"special", special}};
    for (const auto& [k, v] : flags.items()) t[k] = v;
    added.push_back(t);
    return *this;
  }
  uint32_t vocab_entries() const {
    std::set<std::string> merged;
    for (const auto& [a, b] : merges) merged.insert(a + b);
    return 256 + uint32_t(merged.size() + extra.size());
  }
  uint32_t next_id() const { return vocab_entries() + uint32_t(added.size()); }
  json vocab() const {
    json v = json::object();
    for (uint32_t b = 0; b < 256; ++b) v[gpt2_bytes_to_unicode()[b]] = b;
    uint32_t id = 256;
    for (const auto& [a, b] : merges) {
      if (!v.contains(a + b)) v[a + b] = id++;
    }
    for (const std::string& t : extra) v[t] = id++;
    return v;
  }
  json merges_json(bool pairs) const {
    json m = json::array();
    for (const auto& [a, b] : merges) m.push_back(pairs ? json::array({a, b}) : json(a + " " + b));
    return m;
  }
  // Writes DIR/tokenizer.json (and DIR/tokenizer_config.json when config is an object).
  void write(const fs::path& dir, bool pair_merges = false, const json& config = nullptr) const {
    json r = root;
    r["model"]["vocab"] = vocab();
    r["model"]["merges"] = merges_json(pair_merges);
    r["added_tokens"] = added;
    fs::create_directories(dir);
    write_file(dir / "tokenizer.json", r.dump());
    if (config.is_object()) write_file(dir / "tokenizer_config.json", config.dump());
  }
  HfTokenizer load(const TempDir& dir, bool pair_merges = false) const {
    write(dir.path(), pair_merges);
    return HfTokenizer(dir.path().string());
  }
};

Pieces split(const SplitRegex& re, std::string_view text) {
  SplitRegex::MatchData md;
  std::vector<std::string_view> views;
  re.split(text, md, views);
  return Pieces(views.begin(), views.end());
}

TEST(HfTokenizer, MergesApplyLowestRankFirst) {
  TempDir d1, d2;
  TinyHf he_first, th_first;
  he_first.merges = {{"h", "e"}, {"t", "h"}};  // "he" 256, "th" 257
  th_first.merges = {{"t", "h"}, {"h", "e"}};  // "th" 256, "he" 257
  EXPECT_EQ(he_first.load(d1).encode("the"), (Ids{'t', 256}));
  EXPECT_EQ(th_first.load(d2).encode("the"), (Ids{256, 'e'}));
}

TEST(HfTokenizer, MergesStringAndPairFormsAgree) {
  TempDir d1, d2;
  TinyHf t;
  t.merges = {{"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}, {"Ġ", "Ġ"}};
  const std::string text = "the  the the";
  EXPECT_EQ(t.load(d1, false).encode(text), t.load(d2, true).encode(text));
  EXPECT_EQ(t.load(d1).encode(" the"), (Ids{258}));
}

TEST(HfTokenizer, EqualRanksMergeLeftmostFirst) {
  TempDir dir;
  TinyHf t;
  t.merges = {{"a", "a"}, {"aa", "aa"}};  // "aa" 256, "aaaa" 257
  const HfTokenizer tok = t.load(dir);
  EXPECT_EQ(tok.encode("aaa"), (Ids{256, 'a'}));
  EXPECT_EQ(tok.encode("aaaa"), (Ids{257}));
  EXPECT_EQ(tok.encode("aaaaa"), (Ids{257, 'a'}));
}

TEST(HfTokenizer, RepeatedMergeKeepsItsLastRank) {
  TempDir d1, d2;
  TinyHf once, twice;
  once.merges = {{"a", "b"}, {"b", "c"}};  // "ab" 256, "bc" 257
  twice.merges = {{"a", "b"}, {"b", "c"}, {"a", "b"}};
  EXPECT_EQ(once.load(d1).encode("abc"), (Ids{256, 'c'}));
  EXPECT_EQ(twice.load(d2).encode("abc"), (Ids{'a', 257}));  // (a b) now ranks after (b c)
}

TEST(HfTokenizer, IgnoreMergesTakesWholeVocabularyTokens) {
  TempDir d1, d2;
  TinyHf t;
  t.merges = {{"a", "b"}};  // "ab" 256
  t.extra = {"abc"};        // 257, which no merge makes
  EXPECT_EQ(t.load(d1).encode("abc"), (Ids{256, 'c'}));
  t.root["model"]["ignore_merges"] = true;
  const HfTokenizer tok = t.load(d2);
  EXPECT_EQ(tok.encode("abc"), (Ids{257}));
  EXPECT_EQ(tok.encode("abcabc"), (Ids{256, 'c', 256, 'c'}));  // not a vocabulary token
  EXPECT_EQ(tok.decode({257}), "abc");
}

TEST(HfTokenizer, AddedTokensMatchLongestFirstInTheRawText) {
  TempDir dir;
  TinyHf t;
  t.add("<|x|>", true).add("<|x|>y", false, {{"normalized", false}});  // 256, 257
  t.add("<|x|>yz", false);  // 258: normalized, so looked for only after the raw ones
  const HfTokenizer tok = t.load(dir);
  EXPECT_EQ(tok.encode("a<|x|>yb<|x|>"), (Ids{'a', 257, 'b', 256}));
  EXPECT_EQ(tok.encode("<|x|>yz"), (Ids{257, 'z'}));
  EXPECT_EQ(tok.encode("ab<|x|>cd"), (Ids{'a', 'b', 256, 'c', 'd'}));
  EXPECT_EQ(tok.encode("<|x|"), (Ids{'<', '|', 'x', '|'}));
  EXPECT_EQ(tok.decode({'a', 257, 256}), "a<|x|>y<|x|>");
  EXPECT_EQ(tok.token_id("<|x|>y"), 257u);
  EXPECT_EQ(tok.vocab_size(), 259);
}

TEST(HfTokenizer, AddedTokenSplitsTheTextForThePattern) {
  TempDir dir;
  TinyHf t;
  t.merges = {{"Ġ", "Ġ"}};  // "ĠĠ" 256
  t.add("<s>", true);       // 257
  const HfTokenizer tok = t.load(dir);
  // "  <s>": the pattern sees "  " alone, at its end: \s+(?!\S) takes both spaces.
  EXPECT_EQ(tok.encode("  <s>"), (Ids{256, 257}));
  EXPECT_EQ(tok.encode("  x"), (Ids{' ', ' ', 'x'}));  // " " and " x"
}

TEST(HfTokenizer, AddedTokenFlags) {
  TempDir dir;
  TinyHf t;
  t.add("<m>", true, {{"lstrip", true}, {"rstrip", true}});  // 256
  t.add("<w>", true, {{"single_word", true}});               // 257
  const HfTokenizer tok = t.load(dir);
  EXPECT_EQ(tok.encode("a \t<m>  b"), (Ids{'a', 256, 'b'}));  // the spaces go with <m>
  EXPECT_EQ(tok.encode("a <w> b"), (Ids{'a', ' ', 257, ' ', 'b'}));
  EXPECT_EQ(tok.encode("-<w>."), (Ids{'-', 257, '.'}));
  EXPECT_EQ(tok.encode("a<w>"), (Ids{'a', '<', 'w', '>'}));  // touches a word: plain text
  EXPECT_EQ(tok.encode("<w>_").size(), 4u);                  // _ is a word character
  EXPECT_EQ(tok.encode("\xc3\xa9<w>").size(), 5u);           // so is é
}

TEST(HfTokenizer, NfcNormalizerComposesBeforeEncoding) {
  TempDir d1, d2;
  TinyHf t;
  t.merges = {{"Ã", "©"}};  // "é" (C3 A9) 256
  t.add("<|x|>", true);     // 257
  const HfTokenizer plain = t.load(d1);
  EXPECT_EQ(plain.encode("e\xcc\x81"), (Ids{'e', 0xCC, 0x81}));  // e + U+0301 as is
  t.root["normalizer"] = {{"type", "NFC"}};
  const HfTokenizer tok = t.load(d2);
  EXPECT_EQ(tok.encode("e\xcc\x81"), (Ids{256}));
  EXPECT_EQ(tok.encode("\xc3\xa9"), (Ids{256}));
  EXPECT_EQ(tok.decode(tok.encode("e\xcc\x81x")), "\xc3\xa9x");
  EXPECT_EQ(tok.normalize("e\xcc\x81x"), "\xc3\xa9x");
  EXPECT_EQ(plain.normalize("e\xcc\x81x"), "e\xcc\x81x");
  // Text on either side of an added token is normalized on its own.
  EXPECT_EQ(tok.normalize("e<|x|>\xcc\x81"), "e<|x|>\xcc\x81");
  // Canonical reordering, Hangul, singletons, composition exclusions.
  EXPECT_EQ(tok.normalize("a\xcc\xa3\xcc\x82"), "\xe1\xba\xad");  // a + U+0323 U+0302 = U+1EAD
  EXPECT_EQ(tok.normalize("a\xcc\x82\xcc\xa3"), "\xe1\xba\xad");
  EXPECT_EQ(tok.normalize("\xe1\x84\x80\xe1\x85\xa1"), "\xea\xb0\x80");  // U+1100 U+1161
  EXPECT_EQ(tok.normalize("\xe2\x84\xab"), "\xc3\x85");                  // U+212B -> U+00C5
  EXPECT_EQ(tok.normalize("\xe0\xa5\x98"), "\xe0\xa4\x95\xe0\xa4\xbc");  // U+0958 excluded
}

TEST(HfTokenizer, NormalizedAddedTokensMatchAfterNormalization) {
  TempDir dir;
  TinyHf t;
  t.root["normalizer"] = {{"type", "NFC"}};
  t.add("<\xc3\xa9>", false);                            // 256, normalized (not special)
  t.add("<e\xcc\x81!>", true, {{"normalized", false}});  // 257, matched as written
  const HfTokenizer tok = t.load(dir);
  EXPECT_EQ(tok.encode("<e\xcc\x81>"), (Ids{256}));
  EXPECT_EQ(tok.encode("<e\xcc\x81!>"), (Ids{257}));
  EXPECT_EQ(tok.encode("<\xc3\xa9!>").size(), 5u);  // not the raw content of 257
}

TEST(HfTokenizer, PatternSplitsAsOniguruma) {
  const SplitRegex re(kLlama3Pattern, "test");
  EXPECT_EQ(split(re, "Hello world"), (Pieces{"Hello", " world"}));
  EXPECT_EQ(split(re, "I'M here, you're"), (Pieces{"I", "'M", " here", ",", " you", "'re"}));
  EXPECT_EQ(split(re, "12345"), (Pieces{"123", "45"}));
  EXPECT_EQ(split(re, "a  \n\n b"), (Pieces{"a", "  \n\n", " b"}));
  EXPECT_EQ(split(re, "x   y"), (Pieces{"x", "  ", " y"}));
  EXPECT_EQ(split(re, "end  "), (Pieces{"end", "  "}));
  EXPECT_EQ(split(re, "$$$\n\nok"), (Pieces{"$$$\n\n", "ok"}));
  EXPECT_EQ(split(re, ""), Pieces{});
  // Oniguruma's \s is Unicode White_Space: U+0085 is whitespace, U+FEFF and U+180E are not
  // (JavaScript's \s says the opposite for U+0085 and U+FEFF; PCRE2's own \s takes U+180E).
  EXPECT_EQ(split(re, "x\xc2\x85\xc2\x85!"), (Pieces{"x", "\xc2\x85", "\xc2\x85", "!"}));
  EXPECT_EQ(split(re,
                  "a \xef\xbb\xbf"
                  "b"),
            (Pieces{"a", " \xef\xbb\xbf", "b"}));
  EXPECT_EQ(split(re,
                  "a \xe1\xa0\x8e"
                  "b"),
            (Pieces{"a", " \xe1\xa0\x8e", "b"}));
  // (?i:...) folds U+017F LONG S to s, as Oniguruma does.
  EXPECT_EQ(split(re, "'\xc5\xbft"), (Pieces{"'\xc5\xbf", "t"}));
  EXPECT_EQ(split(re, "'St"), (Pieces{"'S", "t"}));
}

TEST(HfTokenizer, Gpt2PatternOfByteLevel) {
  const SplitRegex re(kGpt2SplitPattern, "test");
  EXPECT_EQ(split(re, "  hello world's 123!!"),
            (Pieces{" ", " hello", " world", "'s", " 123", "!!"}));
}

TEST(HfTokenizer, PatternEscapesThatDifferAreRefused) {
  for (const char* p : {"\\w+", "\\h", "a\\b", "\\R"}) {
    try {
      SplitRegex re(p, "KEY");
      ADD_FAILURE() << p << " was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("KEY"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(oniguruma_to_pcre2("[^\\s\\p{L}]\\S\\\\s", "k"),
            "[^\\p{White_Space}\\p{L}]\\P{White_Space}\\\\s");
}

TEST(HfTokenizer, PlainByteLevelUsesGpt2Pattern) {
  TempDir dir;
  TinyHf t;
  t.merges = {{"1", "2"}, {"12", "3"}, {"123", "4"}};  // 256, 257, 258
  t.root["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}};
  EXPECT_EQ(t.load(dir).encode("1234"), (Ids{258}));  // GPT-2: \p{N}+ keeps 1234 whole
  t.root["pre_tokenizer"] = TinyHf().root["pre_tokenizer"];
  TempDir d2;
  EXPECT_EQ(t.load(d2).encode("1234"), (Ids{257, '4'}));  // Llama 3: \p{N}{1,3}
}

TEST(HfTokenizer, VocabSizeAndEndOfText) {
  TempDir dir;
  TinyHf t;
  t.add("<|begin_of_text|>", true).add("<|endoftext|>", true).add("<|eos|>", true);
  t.write(dir.path());
  EXPECT_EQ(HfTokenizer(dir.path().string()).vocab_size(), 259);
  EXPECT_EQ(HfTokenizer(dir.path().string()).eot_token(), 257u);  // no config: <|endoftext|>
  auto eot_with = [&](const json& config) {
    t.write(dir.path(), false, config);
    return HfTokenizer(dir.path().string()).eot_token();
  };
  EXPECT_EQ(eot_with({{"bos_token", "<|begin_of_text|>"}}), 256u);  // Llama 3
  EXPECT_EQ(eot_with({{"bos_token", {{"content", "<|begin_of_text|>"}}}}), 256u);
  EXPECT_EQ(eot_with({{"bos_token", nullptr}, {"eos_token", "<|eos|>"}}), 257u);  // Qwen
  EXPECT_EQ(eot_with({{"bos_token", "<|begin_of_text|>"}, {"add_bos_token", false}}), 257u);
  TinyHf no_endoftext;
  no_endoftext.add("<|eos|>", true);
  no_endoftext.write(dir.path(), false, {{"eos_token", "<|eos|>"}});
  EXPECT_EQ(HfTokenizer(dir.path().string()).eot_token(), 256u);
  no_endoftext.write(dir.path(), false, json::object());
  EXPECT_FALSE(HfTokenizer(dir.path().string()).eot_token().has_value());
}

TEST(HfTokenizer, MakeTokenizerPrefersTokenizerJson) {
  TempDir dir;
  TinyHf().write(dir.path());
  write_file(dir / "encoder.json", "{}");
  write_file(dir / "vocab.bpe", "");
  const std::unique_ptr<Tokenizer> tok = make_tokenizer(dir.path().string());
  EXPECT_EQ(tok->name(), "hf-bpe (" + dir.path().string() + ")");
  EXPECT_EQ(tok->vocab_size(), 256);
}

TEST(HfTokenizer, AnyBytesRoundTrip) {
  TempDir d1, d2;
  TinyHf t;
  t.merges = {{"Ġ", "Ġ"}, {"Ã", "©"}, {"e", "Ì"}};
  t.add("<|x|>", true);
  const HfTokenizer plain = t.load(d1);
  t.root["normalizer"] = {{"type", "NFC"}};
  const HfTokenizer nfc = t.load(d2);
  std::mt19937 rng(7);
  const std::string alphabet[] = {"a",
                                  " ",
                                  "\n",
                                  "\xff",
                                  "\xc3",
                                  "\xa9",
                                  "e",
                                  "\xcc\x81",
                                  "<|x|>",
                                  "\xe2\x80",
                                  "1",
                                  "'s",
                                  "\xf0\x9f\x99\x82",
                                  "\t"};
  for (int i = 0; i < 2000; ++i) {
    std::string s;
    for (int k = int(rng() % 24); k > 0; --k) s += alphabet[rng() % std::size(alphabet)];
    EXPECT_EQ(plain.decode(plain.encode(s)), s);
    EXPECT_EQ(nfc.decode(nfc.encode(s)), nfc.normalize(s));
  }
  const std::string invalid = "\xff\xfe ab \xc3 \xed\xa0\x80 \xf4\x90\x80\x80 \xc0\xaf";
  EXPECT_EQ(nfc.decode(nfc.encode(invalid)), invalid);
  EXPECT_EQ(nfc.normalize(invalid), invalid);
}

TEST(HfTokenizer, LongRunsStayFast) {
  TempDir dir;
  TinyHf t;
  t.merges = {{"Ġ", "Ġ"}, {"a", "a"}, {"1", "1"}};
  const HfTokenizer tok = t.load(dir);
  const auto start = std::chrono::steady_clock::now();
  for (const std::string& s : {std::string(1 << 20, ' '), std::string(1 << 20, 'a'),
                               std::string(1 << 20, '1'), std::string(1 << 20, '\n')}) {
    EXPECT_EQ(tok.decode(tok.encode(s)), s);
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 20);
}

TEST(HfTokenizer, ThreadSafe) {
  TempDir dir;
  TinyHf t;
  t.merges = {{"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}};
  const HfTokenizer tok = t.load(dir);
  std::string text;
  for (int i = 0; i < 2000; ++i) text += " the word" + std::to_string(i) + "\n";
  const Ids expected = tok.encode(text);
  std::vector<Ids> got(4);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < got.size(); ++i) {
    threads.emplace_back([&, i] { got[i] = tok.encode(text); });
  }
  for (auto& th : threads) th.join();
  for (const Ids& ids : got) EXPECT_EQ(ids, expected);
}

TEST(HfTokenizer, DecodeRefusesUnknownIds) {
  TempDir dir;
  TinyHf t;
  t.add("<|x|>", true);
  const HfTokenizer tok = t.load(dir);
  EXPECT_THROW(tok.decode({257}), InputError);
  EXPECT_EQ(tok.decode({}), "");
}

// Each refused configuration: an InputError naming tokenizer.json and the key at fault.
struct Refusal {
  std::string key;
  std::function<void(TinyHf&)> change;
};

TEST(HfTokenizerErrors, RefusedConfigurationsNameTheKey) {
  const std::vector<Refusal> cases = {
      {"model.type", [](TinyHf& t) { t.root["model"]["type"] = "WordPiece"; }},
      {"model.byte_fallback", [](TinyHf& t) { t.root["model"]["byte_fallback"] = true; }},
      {"model.dropout", [](TinyHf& t) { t.root["model"]["dropout"] = 0.1; }},
      {"model.continuing_subword_prefix",
       [](TinyHf& t) { t.root["model"]["continuing_subword_prefix"] = "##"; }},
      {"model.end_of_word_suffix",
       [](TinyHf& t) { t.root["model"]["end_of_word_suffix"] = "</w>"; }},
      {"model.ignore_merges", [](TinyHf& t) { t.root["model"]["ignore_merges"] = "yes"; }},
      {"normalizer.type",
       [](TinyHf& t) {
         t.root["normalizer"] = {{"type", "NFKC"}};
       }},
      {"normalizer.type",
       [](TinyHf& t) {
         t.root["normalizer"] = {{"type", "Sequence"}};
       }},
      {"pre_tokenizer", [](TinyHf& t) { t.root["pre_tokenizer"] = nullptr; }},
      {"pre_tokenizer.type",
       [](TinyHf& t) {
         t.root["pre_tokenizer"] = {{"type", "Metaspace"}};
       }},
      {"pre_tokenizer.pretokenizers[0].behavior",
       [](TinyHf& t) { t.root["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"; }},
      {"pre_tokenizer.pretokenizers[0].invert",
       [](TinyHf& t) { t.root["pre_tokenizer"]["pretokenizers"][0]["invert"] = true; }},
      {"pre_tokenizer.pretokenizers[0].pattern",
       [](TinyHf& t) {
         t.root["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"String", " "}};
       }},
      {"pre_tokenizer.pretokenizers[0].pattern.Regex",
       [](TinyHf& t) { t.root["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+"; }},
      {"pre_tokenizer.pretokenizers[0].pattern.Regex",
       [](TinyHf& t) { t.root["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(a"; }},
      {"pre_tokenizer.pretokenizers[1].add_prefix_space",
       [](TinyHf& t) { t.root["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = true; }},
      {"pre_tokenizer.pretokenizers[0].type",
       [](TinyHf& t) {
         auto& list = t.root["pre_tokenizer"]["pretokenizers"];
         std::swap(list[0], list[1]);  // ByteLevel before Split
       }},
      {"pre_tokenizer.pretokenizers[0].type",
       [](TinyHf& t) {
         t.root["pre_tokenizer"]["pretokenizers"][0] = {{"type", "Digits"}};
       }},
      {"decoder.type",
       [](TinyHf& t) {
         t.root["decoder"] = {{"type", "WordPiece"}};
       }},
      {"decoder", [](TinyHf& t) { t.root["decoder"] = nullptr; }},
      {"truncation",
       [](TinyHf& t) {
         t.root["truncation"] = {{"max_length", 8}};
       }},
      {"padding",
       [](TinyHf& t) {
         t.root["padding"] = {{"strategy", "BatchLongest"}};
       }},
      {"version", [](TinyHf& t) { t.root["version"] = "2.0"; }},
      {"added_tokens[0].id", [](TinyHf& t) { t.add("<a>", true).added[0]["id"] = 300; }},
      {"added_tokens[1].content", [](TinyHf& t) { t.add("<a>", true).add("<a>", false); }},
      {"added_tokens[0].lstrip",
       [](TinyHf& t) {
         t.add("<a>", true, {{"lstrip", 1}});
       }},
  };
  for (const Refusal& c : cases) {
    TempDir dir;
    TinyHf t;
    c.change(t);
    t.write(dir.path());
    const std::string path = (dir / "tokenizer.json").string();
    try {
      HfTokenizer tok(dir.path().string());
      ADD_FAILURE() << c.key << ": accepted";
    } catch (const InputError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(path + ": " + c.key), std::string::npos) << c.key << " -> " << msg;
    }
  }
}

TEST(HfTokenizerErrors, BadVocabularyAndMerges) {
  TempDir dir;
  TinyHf t;
  t.merges = {{"a", "b"}};
  json r = t.root;
  auto expect_error = [&](const json& vocab, const json& merges, const std::string& key) {
    r["model"]["vocab"] = vocab;
    r["model"]["merges"] = merges;
    r["added_tokens"] = json::array();
    write_file(dir / "tokenizer.json", r.dump());
    try {
      HfTokenizer tok(dir.path().string());
      ADD_FAILURE() << key << ": accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << key << " -> " << e.what();
    }
  };
  json vocab = t.vocab();
  json missing_byte = vocab;
  missing_byte.erase("a");
  expect_error(missing_byte, json::array(), "model.vocab has no token for byte 97");
  expect_error(vocab, json::array({"a b c"}), "model.merges[0]");
  expect_error(vocab, json::array({"x y"}), "model.merges[0] (merged) uses \"xy\"");
  expect_error(vocab, json::array({json::array({"a", 1})}), "model.merges[0]");
  json reused = vocab;
  reused["ab"] = 0;
  expect_error(reused, json::array(), "reuses id 0");
  expect_error(json::array(), json::array(), "model.vocab");
  // A malformed file and a missing one name the file.
  write_file(dir / "tokenizer.json", "{\"model\": ");
  EXPECT_THROW(HfTokenizer(dir.path().string()), InputError);
  fs::remove(dir / "tokenizer.json");
  EXPECT_THROW(HfTokenizer(dir.path().string()), InputError);
}

TEST(HfTokenizerErrors, TokenizerConfigNamesTheKey) {
  TempDir dir;
  TinyHf t;
  t.add("<s>", true);
  for (const auto& [config, key] :
       std::vector<std::pair<json, std::string>>{{{{"bos_token", "<nope>"}}, "bos_token"},
                                                 {{{"eos_token", 5}}, "eos_token"},
                                                 {{{"add_bos_token", "no"}}, "add_bos_token"}}) {
    t.write(dir.path(), false, config);
    try {
      HfTokenizer tok(dir.path().string());
      ADD_FAILURE() << key << ": accepted";
    } catch (const InputError& e) {
      const std::string expected = (dir / "tokenizer_config.json").string() + ": " + key;
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace peng
