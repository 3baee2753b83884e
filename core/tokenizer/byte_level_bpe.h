// ByteLevelBpe: the merge step of Hugging Face's BPE model for byte-level vocabularies.
//
// Tokens are handled as the bytes they stand for (the byte-level alphabet of tokenizer.json is
// undone by the loader). encode(chunk) follows Hugging Face's Bpe::tokenize for one pre-token:
//   1. with ignore_merges, a chunk that is itself a vocabulary token is that token;
//   2. otherwise each byte starts as its own token and merges apply one at a time, always the
//      pair of lowest rank, the leftmost among equals (Hugging Face's Word::merge_all, a
//      min-heap on (rank, position); O(n log n), so a megabyte-long chunk stays fast).
// Results are cached per chunk (chunks up to 256 bytes; the cache is cleared when it reaches
// 2^20 entries). Thread-safe: the cache sits behind a mutex, everything else is immutable.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace peng {

// Heterogeneous lookup (find by string_view without building a std::string).
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenIdMap = std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>>;

class ByteLevelBpe {
 public:
  struct Merge {
    uint32_t left, right, result;  // token ids
  };
  // vocab: token bytes -> id, holding every single byte; merges in rank order (rank = index;
  // a pair listed twice keeps its last rank, as Hugging Face's merge map does).
  ByteLevelBpe(TokenIdMap vocab, const std::vector<Merge>& merges, bool ignore_merges);

  // Appends the ids of one pre-token (any bytes; none for an empty one) to out.
  void encode(std::string_view chunk, std::vector<uint32_t>& out) const;
  // The id of the token that stands for exactly `bytes`, if any.
  std::optional<uint32_t> token_id(std::string_view bytes) const;

 private:
  struct Rule {
    uint32_t rank, result;
  };
  void merge(std::string_view chunk, std::vector<uint32_t>& out) const;

  TokenIdMap vocab_;
  uint32_t byte_id_[256] = {};
  std::unordered_map<uint64_t, Rule> rules_;  // (left << 32 | right) -> rank, merged id
  bool ignore_merges_;

  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<uint32_t>, StringHash, std::equal_to<>>
      cache_;
};

}  // namespace peng
