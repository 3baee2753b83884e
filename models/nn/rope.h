// RopeTables: the cos/sin tables of rotary position embeddings, shared by a model's layers.
//
// Row t, column i holds cos/sin(t * inv_freq[i]) for i < head_dim / 2, with RopeConfig's
// frequency rule (theta, optional Llama 3 scaling). Angles are computed in double and
// rounded once to f32. Tables grow on demand to the longest sequence seen.
#pragma once

#include <vector>

#include "peng/core/tensor.h"
#include "peng/models/decoder/config.h"

namespace peng {

// inv_freq[i], i < head_dim / 2, in double (Hugging Face's default rule, then "llama3").
std::vector<double> rope_inv_freq(const RopeConfig& rope, int64_t head_dim);

class RopeTables {
 public:
  RopeTables(const RopeConfig& rope, int64_t head_dim, Device device);
  // Makes the tables hold at least `seq_len` rows (a no-op when they do).
  void ensure(int64_t seq_len);
  const Tensor& cos() const { return cos_; }  // (rows, head_dim / 2)
  const Tensor& sin() const { return sin_; }

 private:
  std::vector<double> inv_freq_;
  Device device_;
  Tensor cos_, sin_;
};

}  // namespace peng
