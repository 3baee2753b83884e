// Communicator: collectives and point-to-point transfers between the ranks of a group.
//
// Contract (every implementation, after PyTorch c10d's ProcessGroup):
// - Every rank of the group issues the same collectives in the same order, with tensors of
//   the same dtype and numel (reduce_scatter/all_gather: see each op). Point-to-point
//   send/recv pairs must match in size and dtype.
// - Asynchronous ops return a Work; the tensors must stay alive and untouched until
//   wait() returns. wait() rethrows a failure as peng::Error naming the op and the group.
//   Synchronous forms are `op(...)->wait()`.
// - Tensors are contiguous; MpiCommunicator takes host tensors, NcclCommunicator device
//   tensors. In-place ops overwrite their input.
// - Reductions of bf16/f16 accumulate each pairwise step in f32 and round back.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "peng/core/tensor.h"

namespace peng {

enum class ReduceOp { kSum, kAvg, kMax };

// A handle on an operation in flight.
class Work {
 public:
  virtual ~Work() = default;
  // Blocks until the operation has completed on this rank.
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "world", "dp", ... : used in error messages.
  virtual const std::string& name() const = 0;
  // True when operations are enqueued on a device stream and complete without the host
  // (NCCL): a caller may issue one as soon as its inputs are enqueued on the compute stream
  // and wait for it later, with no thread driving it. False (MPI, the staged path): an
  // operation progresses only while a thread of this process waits on it or on another.
  virtual bool stream_ordered() const { return false; }

  // A new communicator of the ranks that pass the same `color`, ordered by `key` then by
  // rank. Collective over this communicator.
  virtual std::unique_ptr<Communicator> split(int color, int key, const std::string& name) = 0;

  // In place: every rank ends with op over all ranks' `t`.
  virtual std::unique_ptr<Work> all_reduce(Tensor& t, ReduceOp op) = 0;
  // `in` has size() * out.numel() elements; rank r receives op over all ranks of chunk r.
  virtual std::unique_ptr<Work> reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) = 0;
  // `out` has size() * in.numel() elements; chunk r is rank r's `in`.
  virtual std::unique_ptr<Work> all_gather(const Tensor& in, Tensor& out) = 0;
  // Variable all-to-all (MPI_Alltoallv; Megatron's token dispatch): `in` holds
  // send_counts[0] elements for rank 0, then send_counts[1] for rank 1, ...; `out` receives
  // recv_counts[r] elements from rank r, in rank order. Both count lists have size()
  // entries, in elements, and agree pairwise (rank i's send_counts[j] == rank j's
  // recv_counts[i]); in and out hold their sums and share a dtype.
  virtual std::unique_ptr<Work> all_to_all_v(const Tensor& in,
                                             const std::vector<int64_t>& send_counts, Tensor& out,
                                             const std::vector<int64_t>& recv_counts) = 0;
  // In place: every rank ends with `root`'s t.
  virtual std::unique_ptr<Work> broadcast(Tensor& t, int root) = 0;
  virtual std::unique_ptr<Work> send(const Tensor& t, int dst, int tag = 0) = 0;
  virtual std::unique_ptr<Work> recv(Tensor& t, int src, int tag = 0) = 0;
  virtual void barrier() = 0;
};

}  // namespace peng
