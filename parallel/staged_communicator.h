// StagedCommunicator: device tensors over a host communicator (MPI), staged through host
// memory. The fallback for device tensors where NCCL cannot run (no NCCL in the build, or
// more ranks on a node than GPUs, which share them): parallel.comm = staged (or auto). On the
// CPU backend every job's tensor mesh is one (host tensors pass straight through to MPI).
//
// Contract, on top of communicator.h's:
// - Host tensors pass straight through to the wrapped communicator. A device tensor is
//   copied to a host buffer when the op is issued (inputs), the host op runs, and wait()
//   copies the result back to the device (outputs: all_reduce, broadcast, reduce_scatter's
//   all_gather's and all_to_all_v's out, recv). Inputs and outputs may sit on different devices.
// - Streams. The copies are Tensor::to / copy_from: synchronous, on the device's stream
//   (core/cuda/memory.h), where the CUDA backend computes, so they follow the compute
//   enqueued there before the call, and compute enqueued after wait() sees the result. Work
//   on other streams is the caller's to synchronise. Operations progress only while a thread
//   waits (stream_ordered() is false): the gradient reducer drives them from its thread.
// - Ownership. Owns the wrapped communicator and, per Work, its host buffers. A Work
//   destroyed without wait() waits in its destructor (the host op may still be reading or
//   writing its buffers) and skips the copy back.
// - Builds and runs with or without CUDA (without it, device tensors cannot exist).
#pragma once

#include <memory>
#include <string>

#include "peng/parallel/communicator.h"

namespace peng {

class StagedCommunicator : public Communicator {
 public:
  explicit StagedCommunicator(std::unique_ptr<Communicator> host);

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  const std::string& name() const override { return host_->name(); }
  Communicator& host() { return *host_; }

  // A StagedCommunicator over the host communicator's split.
  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) override;
  std::unique_ptr<Work> all_reduce(Tensor& t, ReduceOp op) override;
  std::unique_ptr<Work> reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) override;
  std::unique_ptr<Work> all_gather(const Tensor& in, Tensor& out) override;
  std::unique_ptr<Work> all_to_all_v(const Tensor& in, const std::vector<int64_t>& send_counts,
                                     Tensor& out, const std::vector<int64_t>& recv_counts) override;
  std::unique_ptr<Work> broadcast(Tensor& t, int root) override;
  std::unique_ptr<Work> send(const Tensor& t, int dst, int tag = 0) override;
  std::unique_ptr<Work> recv(Tensor& t, int src, int tag = 0) override;
  void barrier() override { host_->barrier(); }

 private:
  std::unique_ptr<Communicator> host_;
};

}  // namespace peng
