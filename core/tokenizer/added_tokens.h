// Added tokens (tokenizer.json "added_tokens"): found in the text before the model sees it, the
// way Hugging Face's AddedVocabulary::find_matches does.
//
// Matching is leftmost-longest over the token contents (Hugging Face's Aho-Corasick with
// MatchKind::LeftmostLongest): the earliest position where any token matches, the longest token
// there; the scan resumes after the match. Then, per matched token:
//   - single_word: the match is dropped (left to the model as text) when a word character (\w)
//     touches it on either side; the scan still resumes after it;
//   - lstrip: the match takes in the whitespace (\s) before it, back to the end of the previous
//     match at most;
//   - rstrip: the match takes in the whitespace after it.
// A match that would start inside the previous (rstrip-widened) one is dropped; Hugging Face
// would emit overlapping pieces there. Text is bytes: invalid UTF-8 is neither a word character
// nor whitespace. Immutable after construction, so safe to share between threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace peng {

struct AddedToken {
  std::string content;
  uint32_t id = 0;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

class AddedTokenMatcher {
 public:
  // The tokens to look for (their content as it appears in the searched text). Empty contents
  // are ignored.
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);

  struct Piece {
    std::string_view text;
    const AddedToken* token;  // the added token this piece is, or nullptr for plain text
  };
  // Appends to `pieces` the split of `text` into plain text and added tokens, in order; the
  // pieces concatenate to `text` and none is empty.
  void split(std::string_view text, std::vector<Piece>& pieces) const;

  bool empty() const { return tokens_.empty(); }

 private:
  // The longest token matching at text[i], or -1.
  int longest_at(std::string_view text, size_t i) const;

  std::vector<AddedToken> tokens_;
  std::vector<uint32_t> by_first_byte_[256];  // indices into tokens_, longest content first
};

}  // namespace peng
