// ExpertDispatch: carries token rows to the ranks of their experts and back (Megatron-Core's
// token dispatcher, all-to-all kind), dropless: every (token, choice) pair travels.
//
// Per forward, plan() orders the N*k (token t, choice j) pairs of this rank by expert, then
// token: "send order", M = N*k rows. Experts are split over the expert-parallel group in
// contiguous ranges (parallel/expert_parallel/expert_group.h), so send order is also grouped
// by destination rank. On the receiving side the rows arrive grouped by source rank, then
// expert; dispatch() reorders them expert-major (expert e's rows from rank 0, then rank 1,
// ...), so each local expert computes on one contiguous block; combine() is the reverse.
//   send rows (M, C)  --dispatch-->  expert rows (R, C)  --combine-->  send rows (M, C)
// Without expert parallelism both are the identity (the rows stay where they are).
// The plan lives in tensors only (index tensors and a host table of counts), so a pipeline
// stash moves it with the other activations (activation_slots).
#pragma once

#include <vector>

#include "peng/core/backend.h"
#include "peng/parallel/expert_parallel/expert_group.h"

namespace peng {

class ExpertDispatch {
 public:
  ExpertDispatch(int experts, int topk, const ExpertGroup& group);

  // chosen (N, k) i32 on the host: the plan of this forward. Collective over the ep group
  // (the ranks exchange how many rows each sends to each expert).
  void plan(const Tensor& chosen, Device device);

  // Send order: the token (M) and the flat choice t*k + j (M) of each row, i32 on `device`.
  const Tensor& send_token() const { return send_token_; }
  const Tensor& send_choice() const { return send_choice_; }
  int64_t send_rows() const { return send_token_.numel(); }
  // This forward's tokens per expert, of every expert (E), from this rank's tokens.
  std::vector<int64_t> local_counts() const;
  // Rows of each of this rank's experts (E / ep) in expert order: the blocks of expert rows.
  std::vector<int64_t> expert_rows() const;

  // send (M, C) -> experts (R, C); collective over the ep group.
  void dispatch(Backend& be, const Tensor& send, Tensor& experts);
  // experts (R, C) -> send (M, C); collective over the ep group.
  void combine(Backend& be, const Tensor& experts, Tensor& send);

  void activation_slots(std::vector<Tensor*>& out) {
    out.insert(out.end(), {&send_token_, &send_choice_, &to_expert_, &to_source_, &table_});
  }

 private:
  // table_ (host i32): [0, E) this rank's counts per expert, then per ep rank the rows sent
  // to it, then the rows received from it, then the rows of each local expert.
  const int32_t* table() const { return table_.data<int32_t>(); }
  std::vector<int64_t> counts_times(int64_t offset, int64_t columns) const;

  int experts_, topk_;
  ExpertGroup group_;
  Tensor send_token_, send_choice_;
  Tensor to_expert_, to_source_;  // (R) i32: received order <-> expert-major order
  Tensor table_;
  Tensor received_, returned_;  // scratch: (R, C) rows in received order
};

}  // namespace peng
