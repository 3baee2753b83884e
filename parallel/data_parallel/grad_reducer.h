// GradReducer: data-parallel gradient reduction in buckets, overlapped with backward, and
// the ZeRO shard layout (after PyTorch DDP's Reducer and Megatron's distributed optimizer).
//
// Buckets. The flat gradient buffer (ParameterSet) is cut into buckets of about
// `bucket_bytes`, from the end: backward finishes gradients last-parameter-first and
// announces them with ParameterSet::grads_ready_from(offset). A bucket is reduced over one
// group: dp, or for the weights of experts split over an expert-parallel group
// (Parameter::expert_parallel) the expert-data-parallel group of the ranks holding the same
// experts; buckets never mix the two. A bucket that does not split evenly over its group is
// padded with zeros in a staging buffer.
//
// Overlap. After arm(), each bucket whose range backward has finished is reduced while the
// main thread computes the rest of the backward pass, in order (the same on every rank):
// - Issue::kThread (host communicators: MPI, the staged path, whose operations progress
//   only while a thread waits on them): the bucket is queued to a communication thread that
//   issues and waits for each in turn.
// - Issue::kInline (stream-ordered communicators: NCCL): the main thread issues the bucket's
//   collective as soon as backward announces it; it runs on the communicator's stream after
//   the compute stream's work so far (an event, no host wait), and wait() waits for them all.
// wait() returns when every bucket is reduced, and rethrows a failure (a CollectiveTimeout,
// say). Only armed passes communicate: with gradient accumulation, arm before the last
// micro-batch only (ZeRO 0/1) or before each one (ZeRO 2).
//
// Reduction dtype (Options::reduce_dtype, parallel.grad_reduce_dtype): f32 by default; bf16
// halves the bytes on the wire: each bucket is rounded to bf16 (Backend::cast), reduced (each
// pairwise sum in f32, rounded back: communicator.h) and widened to f32 into place.
//
// Modes.
// - kAllReduce (ZeRO 0): every rank ends with the sum over dp of the whole gradient, in
//   place in the flat gradient buffer.
// - kReduceScatter (ZeRO 1 and 2): rank r ends with the sum over dp of chunk r of every
//   bucket, in shard_grads() (set, or added to with `accumulate`). owned() maps those
//   chunks to flat ranges; after the optimizer has updated them, all_gather_values()
//   gives every rank every parameter.
//
// - ZeRO 2 and 3 (parallel/data_parallel/param_shards.h): kReduceScatter with `units`, flat ranges
//   that are each one bucket (so a unit's gradient chunk and its value chunk line up), and a
//   grad source: when a bucket is queued, the main thread takes its gradient from the
//   source (a buffer of the bucket's padded size, handed over) instead of the flat buffer.
//
// Threading: arm(), wait() and all_gather_values() on the main thread; the main thread
// issues no other collective on the dp group between arm() and wait().
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "peng/core/backend.h"
#include "peng/core/parameter.h"
#include "peng/parallel/communicator.h"

namespace peng {

class GradReducer {
 public:
  enum class Mode { kAllReduce, kReduceScatter };
  enum class Issue { kThread, kInline };

  struct Options {
    int64_t bucket_bytes = 25'000'000;
    Mode mode = Mode::kAllReduce;
    // The group expert weights reduce over (null: dp, as every other weight).
    Communicator* expert_dp = nullptr;
    // kReduceScatter only: one bucket each instead of buckets of bucket_bytes.
    const std::vector<FlatSpan>* units = nullptr;
    DType reduce_dtype = DType::kF32;  // kF32 or kBF16
    // Unset: kInline when every group is stream_ordered(), else kThread.
    std::optional<Issue> issue;
  };

  // Installs itself as `params`' grads-ready hook; `params`, the groups and `backend` (used
  // to accumulate, cast and copy chunks) must outlive it.
  GradReducer(ParameterSet& params, Communicator& dp, Backend& backend, const Options& options);
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // The next backward pass's gradients are reduced as they are announced. With
  // `accumulate` (kReduceScatter only) the reduced chunks are added to shard_grads().
  void arm(bool accumulate = false);
  // Reduces any bucket not yet announced, waits for all, rethrows a thread failure.
  void wait();

  // kReduceScatter: this rank's reduced gradient chunks, one per bucket, concatenated;
  // owned() says which flat ranges they hold (padding positions are zero).
  Tensor& shard_grads() { return shard_; }
  const std::vector<FlatSpan>& owned() const { return owned_; }
  // kReduceScatter: every rank's owned parameter values to every rank.
  void all_gather_values();
  // Where bucket i's gradient comes from when queued (main thread): a tensor of its padded
  // size that the reducer keeps until reduced. Unset: the flat gradient buffer.
  void set_grad_source(std::function<Tensor(size_t bucket)> source) {
    grad_source_ = std::move(source);
  }

  struct Bucket {
    int64_t offset, numel;  // flat range [offset, offset + numel)
    int64_t padded;         // numel rounded up to a multiple of the group's size
    int64_t shard_offset;   // where this rank's chunk (padded / group size) sits in the shard
    Communicator* group;    // dp or the expert-data-parallel group
  };
  const std::vector<Bucket>& buckets() const { return buckets_; }
  Issue issue() const { return issue_; }
  // kThread: the seconds the communication thread spent reducing buckets (each from issue to
  // completion, one after another) since the last call, hidden behind backward or not; with
  // the step's wait on wait(), the share of it that backward hid. kInline: 0, not measured
  // (the collectives run on the communicator's stream).
  double take_comm_seconds();

 private:
  // One bucket's collective in flight: the Work, and what puts its result in place after
  // the wait (widen, copy, accumulate). Holds the buffers the collective uses.
  struct InFlight {
    size_t bucket = 0;
    std::function<void()> finish;
    std::unique_ptr<Work> work;  // destroyed first: a dropped Work may still use the buffers
  };
  // Scratch buffers of a reduction: the padded or narrowed input, the output chunk before
  // it is put in place, that chunk widened.
  enum Scratch { kIn, kPart, kWide, kScratchKinds };

  void on_ready(int64_t offset);  // main thread, from the hook
  void run();                     // communication thread (kThread)
  InFlight issue(size_t index, bool accumulate);
  void complete(InFlight& f);  // waits, puts the result in place, frees the taken gradient
  // The input of bucket `b` as it goes on the wire: padded to b.padded, in the reduction dtype.
  Tensor wire_input(const Bucket& b, const Tensor& taken);
  Tensor scratch(Scratch use, int64_t n, DType dtype);
  // Buckets of [lo, hi) over `group`, from the end (cut at `units` when given, else every
  // bucket_bytes); grows the shard by this rank's chunks.
  void add_buckets(int64_t lo, int64_t hi, Communicator& group, int64_t bucket_bytes,
                   const std::vector<FlatSpan>* units);
  void add_bucket(int64_t lo, int64_t hi, Communicator& group);

  ParameterSet& params_;
  Backend& backend_;
  Mode mode_;
  Device device_;  // the gradients' (ZeRO 2/3 release the flat buffer: kept from the start)
  Issue issue_;
  DType reduce_dtype_;
  std::vector<Bucket> buckets_;  // from the end of the buffer to the start
  std::function<Tensor(size_t)> grad_source_;
  std::vector<Tensor> taken_;  // per bucket: its gradient from the source, until reduced
  std::vector<FlatSpan> owned_;
  Tensor shard_, gather_in_;
  Tensor padded_out_;  // all_gather_values(): a padded bucket's gathered values
  int64_t shard_numel_ = 0, max_staging_ = 0;
  // kThread: one bucket in flight at a time, so each kind of scratch is one buffer, reused
  // (grown to the largest need). kInline allocates per bucket.
  Tensor reused_[kScratchKinds];

  // Main thread state of the armed pass.
  bool armed_ = false, accumulate_ = false;
  size_t next_ = 0;                 // buckets queued (kThread) or issued (kInline) so far
  std::deque<InFlight> in_flight_;  // kInline: issued, not yet completed

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<size_t> queue_;
  size_t done_ = 0;
  double comm_seconds_ = 0;  // see take_comm_seconds()
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace peng
