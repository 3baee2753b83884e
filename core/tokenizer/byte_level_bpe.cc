#include "peng/core/tokenizer/byte_level_bpe.h"

#include <functional>
#include <queue>

#include "peng/core/error.h"

namespace peng {

namespace {

constexpr size_t kMaxCachedChunk = 256;       // bytes; longer chunks are not cached
constexpr size_t kMaxCacheEntries = 1 << 20;  // the cache is cleared when it reaches this

uint64_t pair_key(uint32_t a, uint32_t b) { return (uint64_t(a) << 32) | b; }

}  // namespace

ByteLevelBpe::ByteLevelBpe(TokenIdMap vocab, const std::vector<Merge>& merges, bool ignore_merges)
    : vocab_(std::move(vocab)), ignore_merges_(ignore_merges) {
  for (int b = 0; b < 256; ++b) {
    auto it = vocab_.find(std::string_view(std::string(1, char(b))));
    PENG_CHECK(it != vocab_.end(), "ByteLevelBpe: no token for byte ", b);
    byte_id_[b] = it->second;
  }
  rules_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const Merge& m = merges[rank];
    rules_[pair_key(m.left, m.right)] = Rule{uint32_t(rank), m.result};
  }
}

void ByteLevelBpe::encode(std::string_view chunk, std::vector<uint32_t>& out) const {
  if (chunk.empty()) return;
  if (chunk.size() == 1) {
    out.push_back(byte_id_[static_cast<unsigned char>(chunk[0])]);
    return;
  }
  if (ignore_merges_) {
    auto it = vocab_.find(chunk);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (chunk.size() > kMaxCachedChunk) {
    merge(chunk, out);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(chunk);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t start = out.size();
  merge(chunk, out);
  std::vector<uint32_t> ids(out.begin() + std::ptrdiff_t(start), out.end());
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (cache_.size() >= kMaxCacheEntries) cache_.clear();
  cache_.emplace(std::string(chunk), std::move(ids));
}

std::optional<uint32_t> ByteLevelBpe::token_id(std::string_view bytes) const {
  auto it = vocab_.find(bytes);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

// Symbols form a linked list over the chunk's byte positions; a merge keeps the left node and
// empties the right one. Candidates sit in a min-heap on (rank, position); a popped candidate
// is stale when its node is empty or last, or when its pair no longer makes the same token.
void ByteLevelBpe::merge(std::string_view chunk, std::vector<uint32_t>& out) const {
  const int32_t n = int32_t(chunk.size());
  const size_t len = chunk.size();
  std::vector<uint32_t> sym(len);
  std::vector<int32_t> prev(len), next(len);
  std::vector<bool> alive(len, true);
  for (int32_t i = 0; i < n; ++i) {
    sym[size_t(i)] = byte_id_[static_cast<unsigned char>(chunk[size_t(i)])];
    prev[size_t(i)] = i - 1;
    next[size_t(i)] = i + 1 < n ? i + 1 : -1;
  }
  struct Cand {
    uint32_t rank;
    int32_t pos;
    uint32_t result;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto rule_at = [&](int32_t p) -> const Rule* {
    const int32_t q = next[size_t(p)];
    if (q < 0) return nullptr;
    auto it = rules_.find(pair_key(sym[size_t(p)], sym[size_t(q)]));
    return it == rules_.end() ? nullptr : &it->second;
  };
  auto push = [&](int32_t p) {
    if (const Rule* r = p >= 0 ? rule_at(p) : nullptr) heap.push(Cand{r->rank, p, r->result});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    const int32_t p = c.pos;
    if (!alive[size_t(p)]) continue;
    const Rule* r = rule_at(p);
    if (r == nullptr || r->result != c.result) continue;
    const int32_t q = next[size_t(p)];
    sym[size_t(p)] = c.result;
    alive[size_t(q)] = false;
    next[size_t(p)] = next[size_t(q)];
    if (next[size_t(q)] >= 0) prev[size_t(next[size_t(q)])] = p;
    push(prev[size_t(p)]);
    push(p);
  }
  for (int32_t i = 0; i >= 0; i = next[size_t(i)]) out.push_back(sym[size_t(i)]);
}

}  // namespace peng
