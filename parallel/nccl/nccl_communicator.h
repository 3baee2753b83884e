// NcclCommunicator: Communicator on NCCL for device (CUDA) tensors.
//
// Built whenever peng is built with CUDA (PENG_HAS_NCCL); nccl/no_nccl.cc stands in otherwise.
// Choose it through make_device_communicator (parallel/make_communicator.h), not by name.
//
// Contract (after PyTorch c10d's ProcessGroupNCCL), on top of communicator.h's:
// - Bootstrap. The constructor is collective over `bootstrap` (an MPI group): its rank 0
//   creates the NCCL unique id and broadcasts it over MPI, then every rank joins with
//   ncclCommInitRank on `device`. Rank r of the NCCL group is rank r of `bootstrap`. One GPU
//   per rank: NCCL refuses two ranks of one group on the same device.
// - Tensors. Contiguous, on Device::cuda(device); any other device is a peng::Error. Dtypes
//   f32, f64, bf16, f16, i32 for every op; u16 moves as bytes (all_gather, broadcast,
//   send/recv) and cannot be reduced (peng::Error; the host-staged path can).
//   kAvg is ncclAvg: floats are pre-multiplied by 1/size, integers summed then divided.
// - Streams. Every operation runs on this communicator's own non-blocking stream
//   (comm_stream()). Before it is enqueued, the comm stream waits on an event recorded on
//   the compute stream, so it sees everything the caller enqueued there before the call.
//   Work::wait() blocks the host until the operation has completed (see timeouts), then makes
//   the compute stream wait on its completion event, so compute enqueued after wait() sees
//   the result. The compute stream is the one given to the constructor; nullptr means the
//   legacy default stream. make_nccl_communicator gives the device's stream
//   (core/cuda/memory.h), where the CUDA backend, Tensor copies and allocations run.
// - Point-to-point. NCCL has no tags (`tag` is ignored) and a lone send or recv blocks its
//   stream until the peer's matching op runs, so send/recv are deferred: they are issued
//   together in one ncclGroupStart/End when any of their Works is waited (or destroyed),
//   before the next collective, split or barrier. So `recv` then `send` then both waits
//   (a ring exchange, or send/recv to self) does not deadlock. Pairs match in issue order.
// - Timeouts. wait() polls the completion event; if `timeout_s` passes first, or NCCL
//   reports an asynchronous error, the NCCL communicator is aborted (ncclCommAbort) and
//   wait() throws peng::Error naming the op, the group and the collective's number (the same
//   on every member; send/recv: this rank's transfer number). A timed-out collective also
//   names the members that had not entered it, asked over MPI as the MPI communicator's
//   watchdog asks (mpi/watchdog.h): each communicator keeps a shadow MPI group of its
//   members (split alongside it, never used for traffic) where its collectives are noted. Every
//   later operation on this communicator throws too; its splits are separate NCCL communicators and
//   stay usable. The timeout covers the wait, not the enqueue: the communicator is blocking (not
//   NCCL's non-blocking mode), so set-up that NCCL does on the host inside a call
//   (ncclCommInitRank, ncclCommSplit, and the lazy connection to a peer on first use, NCCL >= 2.22;
//   NCCL_RUNTIME_CONNECT=0 connects at init instead) waits for the peers without a deadline.
// - Ownership. The communicator owns its NCCL communicator, comm stream and events. Works
//   share that state, so a Work may outlive the communicator; a Work holds its tensors
//   until wait() returns. A Work destroyed without wait() still orders the compute stream
//   after the op (no host wait). Destroying the communicator waits up to timeout_s for the
//   comm stream to drain, then destroys the NCCL communicator (or aborts it, if it did not).
// - Threads. One thread at a time per communicator (as NCCL requires per communicator).
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <memory>
#include <string>

#include "peng/parallel/communicator.h"
#include "peng/parallel/mpi/mpi_communicator.h"

namespace peng {

namespace nccl_detail {
struct State;
}

class NcclCommunicator : public Communicator {
 public:
  // Collective over `bootstrap`, which must outlive this communicator and its splits.
  // `timeout_s` (> 0; may be infinity) bounds every Work::wait().
  NcclCommunicator(MpiCommunicator& bootstrap, int device, std::string name, double timeout_s,
                   cudaStream_t compute_stream = nullptr);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override;
  int size() const override;
  const std::string& name() const override;
  bool stream_ordered() const override { return true; }
  int device() const;
  cudaStream_t comm_stream() const;
  cudaStream_t compute_stream() const;

  // Uses ncclCommSplit (NCCL >= 2.18), else an MPI split of the bootstrap group and a new
  // unique id. `color` must be >= 0. The new communicator has the same device, compute
  // stream and timeout, and its own comm stream.
  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) override;
  std::unique_ptr<Work> all_reduce(Tensor& t, ReduceOp op) override;
  std::unique_ptr<Work> reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) override;
  std::unique_ptr<Work> all_gather(const Tensor& in, Tensor& out) override;
  // Grouped ncclSend/ncclRecv pairs (one per peer with a non-zero count) on the comm stream.
  std::unique_ptr<Work> all_to_all_v(const Tensor& in, const std::vector<int64_t>& send_counts,
                                     Tensor& out, const std::vector<int64_t>& recv_counts) override;
  std::unique_ptr<Work> broadcast(Tensor& t, int root) override;
  std::unique_ptr<Work> send(const Tensor& t, int dst, int tag = 0) override;
  std::unique_ptr<Work> recv(Tensor& t, int src, int tag = 0) override;
  // A one-element all_reduce, waited for (with the timeout) on the host.
  void barrier() override;

  // Aborts the NCCL communicator (ncclCommAbort) without waiting for operations in flight;
  // every later operation throws. For error paths: a peer that timed out has aborted.
  void abort();

 private:
  explicit NcclCommunicator(std::shared_ptr<nccl_detail::State> state);
  std::shared_ptr<nccl_detail::State> state_;
};

}  // namespace peng
