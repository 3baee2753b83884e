// Token shards in llm.c's format, and the token stream the training loop reads batches from.
//
// File layout (all little-endian):
//   header: 256 x int32; [0] = magic, [1] = version, [2] = token count N
//   body:   N tokens, uint16 when (magic, version) = (20240520, 1)
//                     uint32 when (magic, version) = (20240801, 7)
// A shard must hold exactly 1024 + N * token_bytes bytes; anything else is an error.
//
// TokenStream opens one shard or every shard matching a glob pattern (sorted by name) and
// treats them as one concatenated stream of tokens. Shards are memory-mapped read-only, so
// opening is cheap whatever their size and readers share the page cache.
//
// Every token handed out is checked against the caller's vocabulary size: an id >= vocab
// throws InputError naming the shard file, the token's position within that file, the id and
// the vocabulary size. Errors on opening name the file (or the glob pattern) and the problem.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace peng {

inline constexpr int kShardHeaderInts = 256;
inline constexpr int64_t kShardHeaderBytes = kShardHeaderInts * 4;
inline constexpr int32_t kShardMagicU16 = 20240520;  // version 1, uint16 tokens
inline constexpr int32_t kShardVersionU16 = 1;
inline constexpr int32_t kShardMagicU32 = 20240801;  // version 7, uint32 tokens
inline constexpr int32_t kShardVersionU32 = 7;
// Default bound for read(): token ids must fit in int32.
inline constexpr int64_t kMaxTokenId = int64_t(INT32_MAX) + 1;

// One memory-mapped, validated shard file. Move-only; unmaps on destruction.
class TokenShard {
 public:
  // Opens and validates `path`. Throws InputError (missing or unreadable file, short header,
  // bad magic/version, negative count, size mismatch: names the file, expected and actual
  // bytes) or IoError (mmap failure).
  explicit TokenShard(const std::string& path);
  ~TokenShard();
  TokenShard(TokenShard&& other) noexcept;
  TokenShard& operator=(TokenShard&& other) noexcept;
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;

  const std::string& path() const { return path_; }
  int64_t size() const { return size_; }            // tokens
  int token_bytes() const { return token_bytes_; }  // 2 or 4

  // Copies tokens [begin, begin + count) of this file into out, checking each id < vocab.
  // Requires 0 <= begin, begin + count <= size().
  void read(int64_t begin, int64_t count, int32_t* out, int64_t vocab) const;

 private:
  void unmap();

  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const unsigned char* tokens_ = nullptr;
  int64_t size_ = 0;
  int token_bytes_ = 2;
};

// What training reads tokens from: a stream of token ids of known length. TokenStream (below)
// is the shard files; a program may supply its own (a generator, an in-memory corpus, a
// remote store) to Trainer (launch/trainer.h, TrainerHooks::train_data): the batch rule is
// applied on top, so every layout still reads the same sequences. Implementations must
// allow const calls from several threads at once.
class TokenSource {
 public:
  virtual ~TokenSource() = default;
  virtual int64_t size() const = 0;  // total tokens
  // What the tokens are, for messages ("data/train_*.bin (4 files)").
  virtual std::string describe() const = 0;
  // Copies tokens [begin, begin + count) into out, checking each id < vocab (InputError
  // naming the source, the position, the id and the vocabulary size). Throws InputError when
  // the range is outside [0, size()). (read_batch checks the ids it returns again.)
  virtual void read(int64_t begin, int64_t count, int32_t* out,
                    int64_t vocab = kMaxTokenId) const = 0;

  // Whole sequences of T+1 tokens one epoch holds: (size() - 1) / T.
  int64_t sequences_per_epoch(int64_t T) const;
  // The batch rule (DESIGN.md). For i in [0, n_seq), global sequence
  //   g = step * global_batch + first_seq + i
  // fills rows i of x and y (each row T tokens, row-major (n_seq, T)):
  //   x[i] = tokens[o .. o+T),  y[i] = tokens[o+1 .. o+T+1),  o = (g mod E) * T
  // where E = sequences_per_epoch(T). While g < E this is exactly the plain rule
  // o = g * T; past the end of the stream it wraps around to the start (epoch 2, 3, ...).
  // A DP rank passes first_seq = its first sequence in the global batch and n_seq = its
  // (micro-)batch size. Throws InputError when E == 0 (fewer than T+1 tokens: names the
  // source), on bad arguments, and on any token id >= vocab.
  void read_batch(int64_t step, int64_t first_seq, int64_t n_seq, int64_t global_batch, int64_t T,
                  int32_t* x, int32_t* y, int64_t vocab) const;
  // The same with the batch's first global sequence given directly (step * global_batch
  // above): a run resumed from a checkpoint continues from its saved data position.
  void read_batch_at(int64_t batch_start, int64_t first_seq, int64_t n_seq, int64_t global_batch,
                     int64_t T, int32_t* x, int32_t* y, int64_t vocab) const;
};

// All shards of one path or glob pattern, as one stream. Immutable after construction, so
// const methods may be called from several threads at once.
class TokenStream final : public TokenSource {
 public:
  // `path_or_glob` is a shard path or a glob(3) pattern (*, ?, [...]). A path that names an
  // existing file is taken literally; otherwise a pattern with no match throws InputError
  // naming the pattern. Shards are opened in sorted name order.
  explicit TokenStream(const std::string& path_or_glob);

  int64_t size() const override { return total_; }  // total tokens over all shards
  const std::vector<std::string>& paths() const { return paths_; }
  // The file, or "PATTERN (N files)": for messages.
  std::string describe() const override;
  // Copies tokens [begin, begin + count) of the concatenated stream into out, crossing shard
  // boundaries as needed. Each id is checked against vocab (see the file comment).
  void read(int64_t begin, int64_t count, int32_t* out, int64_t vocab = kMaxTokenId) const override;

 private:
  std::string spec_;
  std::vector<std::string> paths_;
  std::vector<TokenShard> shards_;
  std::vector<int64_t> starts_;  // starts_[k] = first stream position of shard k
  int64_t total_ = 0;
};

// Writes `tokens` as one shard at `path` (via a temporary file renamed into place). Uses uint16
// tokens (magic 20240520, version 1) unless wide is true or an id exceeds 65535, then uint32
// (magic 20240801, version 7). Throws InputError when there are more than INT32_MAX tokens
// and IoError when the file cannot be written (names the file).
void write_token_shard(const std::string& path, const std::vector<uint32_t>& tokens,
                       bool wide = false);

}  // namespace peng
