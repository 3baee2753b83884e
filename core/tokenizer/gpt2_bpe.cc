#include "peng/core/tokenizer/gpt2_bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "peng/core/error.h"
#include "peng/core/tokenizer/byte_level_bpe.h"
#include "peng/core/tokenizer/utf8.h"

namespace peng {

namespace {

// Python `regex`'s \s (Unicode White_Space), inside a character class.
#define PENG_GPT2_WS                                                                          \
  "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}" \
  "\\x{205F}\\x{3000}"
constexpr const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" PENG_GPT2_WS
    "\\p{L}\\p{N}]+"
    "|[" PENG_GPT2_WS "]+(?![^" PENG_GPT2_WS "])|[" PENG_GPT2_WS "]+";
#undef PENG_GPT2_WS

std::string read_whole_file(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  PENG_INPUT_CHECK(f.good(), "cannot open ", what, " ", path);
  std::ostringstream os;
  os << f.rdbuf();
  PENG_INPUT_CHECK(!f.bad(), "cannot read ", what, " ", path);
  return os.str();
}

}  // namespace

const std::array<std::string, 256>& gpt2_bytes_to_unicode() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    uint32_t n = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      t[b] = utf8_encode(printable ? b : 256 + n++);
    }
    return t;
  }();
  return table;
}

struct Gpt2Bpe::Impl {
  std::string dir;
  std::vector<std::string> id_bytes;                      // id -> the bytes it stands for
  std::unordered_map<std::string, uint32_t> token_to_id;  // encoder.json
  // GPT-2's merge step (merge all occurrences of the best-ranked pair, repeatedly) is the
  // Hugging Face BPE model's on a byte-level vocabulary without ignore_merges.
  std::unique_ptr<ByteLevelBpe> model;
  std::optional<uint32_t> eot;
  pcre2_code* re = nullptr;

  ~Impl() {
    if (re != nullptr) pcre2_code_free(re);
  }

  void load_encoder(const std::string& path);
  void load_merges(const std::string& path);
  void compile_regex();
  void bpe(std::string_view chunk, std::vector<uint32_t>& out) const { model->encode(chunk, out); }
  void encode_valid(std::string_view text, pcre2_match_data* md, std::vector<uint32_t>& out) const;
};

void Gpt2Bpe::Impl::load_encoder(const std::string& path) {
  const std::string text = read_whole_file(path, "GPT-2 encoder.json");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(detail::concat("GPT-2 encoder.json ", path, " is malformed: ", e.what()));
  }
  PENG_INPUT_CHECK(j.is_object() && !j.empty(), "GPT-2 encoder.json ", path,
                   " is not a non-empty JSON object of token -> id");
  const size_t n = j.size();
  id_bytes.assign(n, std::string());
  std::vector<bool> seen(n, false);
  // byte_decoder: code point -> byte.
  std::unordered_map<uint32_t, unsigned char> byte_decoder;
  std::vector<uint32_t> cps;
  for (int b = 0; b < 256; ++b) {
    utf8_decode(gpt2_bytes_to_unicode()[b], cps);
    byte_decoder[cps[0]] = static_cast<unsigned char>(b);
  }
  for (const auto& [key, value] : j.items()) {
    PENG_INPUT_CHECK(value.is_number_integer(), "GPT-2 encoder.json ", path, ": the id of token ",
                     nlohmann::json(key).dump(), " is not an integer");
    const int64_t id = value.get<int64_t>();
    PENG_INPUT_CHECK(id >= 0 && id < int64_t(n), "GPT-2 encoder.json ", path, ": token ",
                     nlohmann::json(key).dump(), " has id ", id, ", outside [0, ", n, ")");
    PENG_INPUT_CHECK(!seen[size_t(id)], "GPT-2 encoder.json ", path, ": id ", id,
                     " is used twice (again by token ", nlohmann::json(key).dump(), ")");
    seen[size_t(id)] = true;
    std::string bytes;
    const bool ok = utf8_decode(key, cps);
    for (uint32_t cp : cps) {
      auto it = byte_decoder.find(cp);
      PENG_INPUT_CHECK(ok && it != byte_decoder.end(), "GPT-2 encoder.json ", path, ": token ",
                       nlohmann::json(key).dump(), " (id ", id,
                       ") holds a character outside GPT-2's byte alphabet");
      bytes += char(it->second);
    }
    PENG_INPUT_CHECK(!bytes.empty(), "GPT-2 encoder.json ", path, ": empty token (id ", id, ")");
    id_bytes[size_t(id)] = std::move(bytes);
    token_to_id.emplace(key, uint32_t(id));
  }
  for (int b = 0; b < 256; ++b) {
    PENG_INPUT_CHECK(token_to_id.count(gpt2_bytes_to_unicode()[b]), "GPT-2 encoder.json ", path,
                     ": no token for byte ", b, " (",
                     nlohmann::json(gpt2_bytes_to_unicode()[b]).dump(), ")");
  }
  auto it = token_to_id.find("<|endoftext|>");
  if (it != token_to_id.end()) eot = it->second;
}

void Gpt2Bpe::Impl::load_merges(const std::string& path) {
  const std::string text = read_whole_file(path, "GPT-2 vocab.bpe");
  size_t pos = 0;
  int64_t line_no = 0;
  std::vector<ByteLevelBpe::Merge> merges;  // in rank order
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line_no == 1 && line.starts_with("#version")) continue;
    if (line.empty()) continue;
    std::vector<std::string_view> fields;
    size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
      size_t j = i;
      while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
      if (j > i) fields.push_back(line.substr(i, j - i));
      i = j;
    }
    PENG_INPUT_CHECK(fields.size() == 2, "GPT-2 vocab.bpe ", path, " line ", line_no,
                     ": expected two tokens \"A B\", got ", fields.size());
    auto a = token_to_id.find(std::string(fields[0]));
    auto b = token_to_id.find(std::string(fields[1]));
    auto ab = token_to_id.find(std::string(fields[0]) + std::string(fields[1]));
    PENG_INPUT_CHECK(a != token_to_id.end() && b != token_to_id.end() && ab != token_to_id.end(),
                     "GPT-2 vocab.bpe ", path, " line ", line_no, ": merge \"", line,
                     "\" uses or makes a token that is not in encoder.json");
    // Like GPT-2's dict(zip(merges, range(...))), ByteLevelBpe keeps a repeated merge's last
    // rank.
    merges.push_back({a->second, b->second, ab->second});
  }
  TokenIdMap vocab;
  for (size_t id = 0; id < id_bytes.size(); ++id) vocab.emplace(id_bytes[id], uint32_t(id));
  model = std::make_unique<ByteLevelBpe>(std::move(vocab), merges, /*ignore_merges=*/false);
}

void Gpt2Bpe::Impl::compile_regex() {
  int err = 0;
  PCRE2_SIZE offset = 0;
  re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kGpt2Pattern), PCRE2_ZERO_TERMINATED,
                     PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
  if (re == nullptr) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof buf);
    throw Error(detail::concat("GPT-2 pre-tokenizer regex does not compile at offset ", offset,
                               ": ", reinterpret_cast<const char*>(buf)));
  }
  pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  // optional speed-up; the interpreter is the fallback
}

void Gpt2Bpe::Impl::encode_valid(std::string_view text, pcre2_match_data* md,
                                 std::vector<uint32_t>& out) const {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  PCRE2_SIZE offset = 0;
  while (offset < text.size()) {
    const int rc = pcre2_match(re, subject, text.size(), offset, PCRE2_NO_UTF_CHECK, md, nullptr);
    PCRE2_SIZE begin = offset, end = text.size();
    if (rc > 0) {
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      begin = ov[0];
      end = ov[1];
    } else if (rc != PCRE2_ERROR_NOMATCH) {
      // A resource limit on a pathological input: keep going one character at a time rather
      // than fail (never reached on ordinary text).
      end = offset + utf8_char_len(subject + offset, text.size() - offset);
    }
    if (begin > offset) bpe(text.substr(offset, begin - offset), out);  // unmatched gap
    if (end <= begin) end = begin + utf8_char_len(subject + begin, text.size() - begin);
    bpe(text.substr(begin, end - begin), out);
    offset = end;
  }
}

Gpt2Bpe::Gpt2Bpe(const std::string& dir)
    : Gpt2Bpe((std::filesystem::path(dir) / "encoder.json").string(),
              (std::filesystem::path(dir) / "vocab.bpe").string()) {
  impl_->dir = dir;
}

Gpt2Bpe::Gpt2Bpe(const std::string& encoder_json_path, const std::string& vocab_bpe_path)
    : impl_(std::make_unique<Impl>()) {
  impl_->dir = std::filesystem::path(encoder_json_path).parent_path().string();
  impl_->load_encoder(encoder_json_path);
  impl_->load_merges(vocab_bpe_path);
  impl_->compile_regex();
}

Gpt2Bpe::~Gpt2Bpe() = default;

std::vector<uint32_t> Gpt2Bpe::encode(std::string_view text) const {
  std::vector<uint32_t> out;
  out.reserve(text.size() / 3 + 1);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(impl_->re, nullptr);
  PENG_CHECK(md != nullptr, "GPT-2 tokenizer: out of memory for regex match data");
  try {
    for_each_utf8_run(text, [&](std::string_view run, bool valid) {
      if (valid) {
        impl_->encode_valid(run, md, out);
      } else {
        impl_->bpe(run, out);
      }
    });
  } catch (...) {
    pcre2_match_data_free(md);
    throw;
  }
  pcre2_match_data_free(md);
  return out;
}

std::string Gpt2Bpe::decode(const std::vector<uint32_t>& ids) const {
  std::string out;
  for (uint32_t id : ids) out += token_bytes(id);
  return out;
}

const std::string& Gpt2Bpe::token_bytes(uint32_t id) const {
  PENG_INPUT_CHECK(id < impl_->id_bytes.size(), "GPT-2 tokenizer ", impl_->dir, ": token id ", id,
                   " is outside the vocab of ", impl_->id_bytes.size());
  return impl_->id_bytes[id];
}

int64_t Gpt2Bpe::vocab_size() const { return int64_t(impl_->id_bytes.size()); }

std::optional<uint32_t> Gpt2Bpe::eot_token() const { return impl_->eot; }

std::string Gpt2Bpe::name() const { return "gpt2-bpe (" + impl_->dir + ")"; }

std::optional<uint32_t> Gpt2Bpe::token_id(std::string_view token) const {
  auto it = impl_->token_to_id.find(std::string(token));
  if (it == impl_->token_to_id.end()) return std::nullopt;
  return it->second;
}

}  // namespace peng
