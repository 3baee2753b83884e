#include "peng/core/tokenizer/tokenizer.h"

#include <filesystem>

#include "peng/core/error.h"
#include "peng/core/tokenizer/gpt2_bpe.h"
#include "peng/core/tokenizer/hf_tokenizer.h"

namespace peng {

std::vector<uint32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<uint32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<uint32_t>& ids) const {
  std::string out(ids.size(), '\0');
  for (size_t i = 0; i < ids.size(); ++i) {
    PENG_INPUT_CHECK(ids[i] < 256, "byte tokenizer: token id ", ids[i],
                     " is outside the vocab of 256");
    out[i] = static_cast<char>(ids[i]);
  }
  return out;
}

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& spec) {
  namespace fs = std::filesystem;
  if (spec == "byte") return std::make_unique<ByteTokenizer>();
  std::error_code ec;
  PENG_INPUT_CHECK(fs::is_directory(spec, ec), "tokenizer ", spec,
                   ": neither \"byte\" nor a folder holding a Hugging Face tokenizer.json or "
                   "GPT-2's encoder.json and vocab.bpe");
  if (fs::exists(fs::path(spec) / "tokenizer.json", ec)) {
    return std::make_unique<HfTokenizer>(spec);
  }
  for (const char* name : {"encoder.json", "vocab.bpe"}) {
    const fs::path p = fs::path(spec) / name;
    PENG_INPUT_CHECK(fs::exists(p, ec), "tokenizer folder ", spec,
                     " has neither tokenizer.json nor GPT-2's ", name, " (", p.string(),
                     " is missing)");
  }
  return std::make_unique<Gpt2Bpe>(spec);
}

}  // namespace peng
