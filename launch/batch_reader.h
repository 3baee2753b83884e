// BatchReader: the micro-batches of this rank's slice of each step's global batch, by the
// batch rule (DESIGN.md): step s reads global sequences from s * B (from a resumed run's
// data position), dp rank r takes [r B / dp, (r+1) B / dp), split into micro-batches.
#pragma once

#include <cstdint>

#include "core/data/token_shard.h"
#include "core/tensor.h"

namespace peng {

class BatchReader {
 public:
  // `first_seq`: this rank's first sequence within a global batch of `global_batch`;
  // micro-batches of `micro` sequences of `seq` tokens; token ids must be below `vocab`.
  BatchReader(const TokenStream& stream, int64_t global_batch, int64_t first_seq, int64_t micro,
              int64_t seq, int64_t vocab);

  // Step `step` starts at global sequence `sequence` (a resumed run: its data position).
  void set_origin(int64_t step, int64_t sequence) {
    origin_step_ = step;
    origin_seq_ = sequence;
  }
  // The global sequence step `step` starts at.
  int64_t batch_start(int64_t step) const { return origin_seq_ + (step - origin_step_) * batch_; }
  // Reads micro-batch `micro_index` of step `step` into x() and y(), (micro, seq) i32.
  void read(int64_t step, int64_t micro_index);
  const Tensor& x() const { return x_; }
  const Tensor& y() const { return y_; }

 private:
  const TokenStream& stream_;
  int64_t batch_, first_, micro_, seq_, vocab_;
  int64_t origin_step_ = 0, origin_seq_ = 0;
  Tensor x_, y_;
};

}  // namespace peng
