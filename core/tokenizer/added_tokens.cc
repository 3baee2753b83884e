#include "peng/core/tokenizer/added_tokens.h"

#include <algorithm>

#include "peng/core/tokenizer/unicode.h"
#include "peng/core/tokenizer/utf8.h"

namespace peng {

namespace {

const unsigned char* bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// The well-formed character that starts at pos, if any.
bool char_at(std::string_view s, size_t pos, uint32_t& cp, size_t& len) {
  if (pos >= s.size()) return false;
  len = utf8_char_len(bytes(s) + pos, s.size() - pos);
  if (len == 0) return false;
  cp = utf8_code_point(bytes(s) + pos, len);
  return true;
}

// The well-formed character that ends at pos, if any.
bool char_before(std::string_view s, size_t pos, uint32_t& cp, size_t& len) {
  for (size_t k = 1; k <= 4 && k <= pos; ++k) {
    if ((bytes(s)[pos - k] & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    return char_at(s, pos - k, cp, len) && len == k;
  }
  return false;
}

bool word_before(std::string_view s, size_t pos) {
  uint32_t cp;
  size_t len;
  return char_before(s, pos, cp, len) && is_word_char(cp);
}

bool word_at(std::string_view s, size_t pos) {
  uint32_t cp;
  size_t len;
  return char_at(s, pos, cp, len) && is_word_char(cp);
}

// Start of the run of whitespace that ends at pos.
size_t space_run_start(std::string_view s, size_t pos) {
  uint32_t cp;
  size_t len;
  while (char_before(s, pos, cp, len) && is_white_space(cp)) pos -= len;
  return pos;
}

// End of the run of whitespace that starts at pos.
size_t space_run_end(std::string_view s, size_t pos) {
  uint32_t cp;
  size_t len;
  while (char_at(s, pos, cp, len) && is_white_space(cp)) pos += len;
  return pos;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) {
  for (AddedToken& t : tokens) {
    if (!t.content.empty()) tokens_.push_back(std::move(t));
  }
  for (uint32_t i = 0; i < tokens_.size(); ++i) {
    by_first_byte_[static_cast<unsigned char>(tokens_[i].content[0])].push_back(i);
  }
  for (auto& bucket : by_first_byte_) {
    std::stable_sort(bucket.begin(), bucket.end(), [&](uint32_t a, uint32_t b) {
      return tokens_[a].content.size() > tokens_[b].content.size();
    });
  }
}

int AddedTokenMatcher::longest_at(std::string_view text, size_t i) const {
  for (uint32_t t : by_first_byte_[static_cast<unsigned char>(text[i])]) {
    if (text.substr(i).starts_with(tokens_[t].content)) return int(t);
  }
  return -1;
}

void AddedTokenMatcher::split(std::string_view text, std::vector<Piece>& pieces) const {
  size_t done = 0;  // end of the last piece emitted
  size_t i = 0;
  while (i < text.size()) {
    const int t = longest_at(text, i);
    if (t < 0) {
      ++i;
      continue;
    }
    const AddedToken& tok = tokens_[size_t(t)];
    size_t start = i, stop = i + tok.content.size();
    i = stop;                    // the scan resumes after the raw match, whatever becomes of it
    if (start < done) continue;  // inside the previous, rstrip-widened match
    if (tok.single_word && (word_before(text, start) || word_at(text, stop))) continue;
    if (tok.lstrip) start = std::max(space_run_start(text, start), done);
    if (tok.rstrip) stop = space_run_end(text, stop);
    if (start > done) pieces.push_back(Piece{text.substr(done, start - done), nullptr});
    pieces.push_back(Piece{text.substr(start, stop - start), &tok});
    done = stop;
  }
  if (done < text.size()) pieces.push_back(Piece{text.substr(done), nullptr});
}

}  // namespace peng
