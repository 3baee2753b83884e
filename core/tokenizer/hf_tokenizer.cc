#include "peng/core/tokenizer/hf_tokenizer.h"

#include <filesystem>
#include <unordered_map>

#include "peng/core/error.h"
#include "peng/core/tokenizer/added_tokens.h"
#include "peng/core/tokenizer/byte_level_bpe.h"
#include "peng/core/tokenizer/hf_tokenizer_json.h"
#include "peng/core/tokenizer/split_regex.h"
#include "peng/core/tokenizer/unicode.h"
#include "peng/core/tokenizer/utf8.h"

namespace peng {

namespace {

// The added tokens that Hugging Face matches in the raw text (normalized == false), or those it
// matches in the normalized text (normalized == true: their content normalized too).
std::vector<AddedToken> added_tokens_for(const HfTokenizerSpec& spec, bool normalized) {
  std::vector<AddedToken> out;
  for (AddedToken t : spec.added_tokens) {
    if (t.normalized != normalized) continue;
    if (normalized && spec.nfc) {
      if (auto n = nfc_if_changed(t.content)) t.content = *n;
    }
    out.push_back(std::move(t));
  }
  return out;
}

std::optional<uint32_t> choose_eot(const HfTokenizerSpec& spec) {
  if (spec.bos && spec.add_bos) return spec.bos;
  if (spec.endoftext) return spec.endoftext;
  return spec.eos;
}

}  // namespace

struct HfTokenizer::Impl {
  std::string dir;
  std::vector<std::optional<std::string>> id_bytes;
  std::unordered_map<std::string, uint32_t> added_ids;  // content -> id
  ByteLevelBpe bpe;
  std::vector<SplitRegex> splits;
  bool nfc;
  AddedTokenMatcher raw_tokens, normalized_tokens;
  std::optional<uint32_t> eot;

  explicit Impl(HfTokenizerSpec spec);

  // Per-call working memory: match data and one piece list per pre-tokenizer pattern.
  struct Scratch {
    SplitRegex::MatchData md;
    std::vector<std::vector<std::string_view>> levels;
  };
  void encode_text(std::string_view text, Scratch& s, std::vector<uint32_t>& out) const;
  void pre_tokenize(std::string_view text, size_t level, Scratch& s,
                    std::vector<uint32_t>& out) const;
};

HfTokenizer::Impl::Impl(HfTokenizerSpec spec)
    : dir(spec.dir),
      bpe(std::move(spec.vocab), spec.merges, spec.ignore_merges),
      nfc(spec.nfc),
      raw_tokens(added_tokens_for(spec, false)),
      normalized_tokens(added_tokens_for(spec, true)),
      eot(choose_eot(spec)) {
  const std::string file = (std::filesystem::path(dir) / "tokenizer.json").string();
  for (const HfTokenizerSpec::Pattern& p : spec.split_patterns) {
    splits.emplace_back(p.regex, "tokenizer.json " + file + ": " + p.key);
  }
  for (const AddedToken& t : spec.added_tokens) added_ids.emplace(t.content, t.id);
  id_bytes = std::move(spec.id_bytes);
}

// Text between raw-matched added tokens: normalized run by run (invalid bytes stay as they are,
// each run of them one pre-token), then split by the normalized added tokens.
void HfTokenizer::Impl::encode_text(std::string_view text, Scratch& s,
                                    std::vector<uint32_t>& out) const {
  for_each_utf8_run(text, [&](std::string_view run, bool valid) {
    if (!valid) return bpe.encode(run, out);
    const std::optional<std::string> normalized = nfc ? nfc_if_changed(run) : std::nullopt;
    const std::string_view t = normalized ? std::string_view(*normalized) : run;
    if (normalized_tokens.empty()) return pre_tokenize(t, 0, s, out);
    std::vector<AddedTokenMatcher::Piece> pieces;
    normalized_tokens.split(t, pieces);
    for (const AddedTokenMatcher::Piece& p : pieces) {
      if (p.token != nullptr) {
        out.push_back(p.token->id);
      } else {
        pre_tokenize(p.text, 0, s, out);
      }
    }
  });
}

// Splits text with pattern `level`, and each piece with the next pattern (each level has its
// own piece list in `s`); the last pattern's pieces are the pre-tokens the model encodes.
void HfTokenizer::Impl::pre_tokenize(std::string_view text, size_t level, Scratch& s,
                                     std::vector<uint32_t>& out) const {
  if (level == splits.size()) return bpe.encode(text, out);
  std::vector<std::string_view>& pieces = s.levels[level];
  pieces.clear();
  splits[level].split(text, s.md, pieces);
  for (std::string_view p : pieces) pre_tokenize(p, level + 1, s, out);
}

HfTokenizer::HfTokenizer(const std::string& dir)
    : impl_(std::make_unique<Impl>(read_hf_tokenizer(dir))) {}

HfTokenizer::~HfTokenizer() = default;

std::vector<uint32_t> HfTokenizer::encode(std::string_view text) const {
  std::vector<uint32_t> out;
  out.reserve(text.size() / 4 + 1);
  Impl::Scratch scratch;
  scratch.levels.resize(impl_->splits.size());
  std::vector<AddedTokenMatcher::Piece> pieces;
  impl_->raw_tokens.split(text, pieces);
  for (const AddedTokenMatcher::Piece& p : pieces) {
    if (p.token != nullptr) {
      out.push_back(p.token->id);
    } else {
      impl_->encode_text(p.text, scratch, out);
    }
  }
  return out;
}

std::string HfTokenizer::normalize(std::string_view text) const {
  std::string out;
  std::vector<AddedTokenMatcher::Piece> pieces;
  impl_->raw_tokens.split(text, pieces);
  for (const AddedTokenMatcher::Piece& p : pieces) {
    if (p.token != nullptr || !impl_->nfc) {
      out += p.text;
      continue;
    }
    for_each_utf8_run(p.text, [&](std::string_view run, bool valid) {
      const std::optional<std::string> n = valid ? nfc_if_changed(run) : std::nullopt;
      out += n ? std::string_view(*n) : run;
    });
  }
  return out;
}

std::string HfTokenizer::decode(const std::vector<uint32_t>& ids) const {
  std::string out;
  for (uint32_t id : ids) {
    PENG_INPUT_CHECK(id < impl_->id_bytes.size() && impl_->id_bytes[id], "tokenizer ", name(),
                     ": token id ", id, " is not a token (the vocabulary has ids below ",
                     impl_->id_bytes.size(), ")");
    out += *impl_->id_bytes[id];
  }
  return out;
}

int64_t HfTokenizer::vocab_size() const { return int64_t(impl_->id_bytes.size()); }

std::optional<uint32_t> HfTokenizer::eot_token() const { return impl_->eot; }

std::string HfTokenizer::name() const { return "hf-bpe (" + impl_->dir + ")"; }

std::optional<uint32_t> HfTokenizer::token_id(std::string_view token) const {
  auto it = impl_->added_ids.find(std::string(token));
  if (it != impl_->added_ids.end()) return it->second;
  const std::optional<std::string> bytes = byte_level_to_bytes(std::string(token));
  if (bytes) return impl_->bpe.token_id(*bytes);
  return std::nullopt;
}

}  // namespace peng
