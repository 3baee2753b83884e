// ExpertGroup: what a Mixture-of-Experts layer needs to know of the ranks around it.
//
// - ep: the expert-parallel group (Megatron-Core's EP), ep ranks taken out of data
//   parallelism: the E routed experts of every MoE layer are split into ep equal, contiguous
//   ranges, group rank r holding experts [r E/ep, (r+1) E/ep). Tokens travel to their
//   experts' ranks and back with all_to_all_v. Null: every expert is here.
// - routing: the ranks whose tokens one forward's balance statistics (tokens per expert,
//   the auxiliary loss's f_e and P_e) add up over: the data-parallel group at this rank's
//   pipeline stage, and the tensor-parallel group too under sequence parallelism (each tp
//   rank then routes its own rows). Null: this rank alone.
// Layers call the groups in the same order on every rank (the Communicator contract).
#pragma once

#include "peng/parallel/communicator.h"

namespace peng {

struct ExpertGroup {
  Communicator* ep = nullptr;
  Communicator* routing = nullptr;

  int size() const { return ep ? ep->size() : 1; }
  int rank() const { return ep ? ep->rank() : 0; }
};

}  // namespace peng
