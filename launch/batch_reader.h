// BatchReader: the micro-batches of this rank's slice of each step's global batch, by the
// batch rule (DESIGN.md): step s reads global sequences from s * B (from a resumed run's
// data position), dp rank r takes [r B / dp, (r+1) B / dp), split into micro-batches.
//
// On a GPU the tokens are read into pinned host buffers and copied to the device tensors
// x() and y() asynchronously on the device's stream: read() waits only until the previous
// micro-batch's copy has run (the GPU is then at most that micro-batch's work behind), never
// for the whole stream.
#pragma once

#include <cstdint>
#include <memory>

#include "peng/core/data/token_shard.h"
#include "peng/core/tensor.h"

namespace peng {

namespace cuda {
class Event;
class PinnedBuffer;
}  // namespace cuda

class BatchReader {
 public:
  // `first_seq`: this rank's first sequence within a global batch of `global_batch`;
  // micro-batches of `micro` sequences of `seq` tokens; token ids must be below `vocab`;
  // x() and y() live on `device`.
  BatchReader(const TokenSource& stream, int64_t global_batch, int64_t first_seq, int64_t micro,
              int64_t seq, int64_t vocab, Device device = Device::cpu());
  ~BatchReader();

  // Step `step` starts at global sequence `sequence` (a resumed run: its data position).
  void set_origin(int64_t step, int64_t sequence) {
    origin_step_ = step;
    origin_seq_ = sequence;
  }
  // The global sequence step `step` starts at.
  int64_t batch_start(int64_t step) const { return origin_seq_ + (step - origin_step_) * batch_; }
  // Reads micro-batch `micro_index` of step `step` into x() and y(), (micro, seq) i32 (on a
  // GPU: queued on the device's stream, in stream order with the work that reads them).
  void read(int64_t step, int64_t micro_index);
  const Tensor& x() const { return x_; }
  const Tensor& y() const { return y_; }

 private:
  const TokenSource& stream_;
  int64_t batch_, first_, micro_, seq_, vocab_;
  int64_t origin_step_ = 0, origin_seq_ = 0;
  Tensor x_, y_;
  // GPU only: the pinned staging of x and y (x first), and the mark after their last copy.
  std::unique_ptr<cuda::PinnedBuffer> staging_;
  std::unique_ptr<cuda::Event> copied_;
};

}  // namespace peng
