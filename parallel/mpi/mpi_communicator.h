// MpiCommunicator: Communicator on Open MPI for host tensors, with non-blocking MPI
// collectives (MPI_Iallreduce, ...) behind the Work handles.
//
// MPI is initialised once per process (MPI_THREAD_MULTIPLE requested, so a communication
// thread may issue operations) by `mpi_world()` and finalised at exit.
// bf16/f16 reductions use user-defined MPI ops that accumulate in f32.
// reduce_scatter is a ring of point-to-point messages (tag 32000); send/recv tags must be
// in [0, 32000).
// Every wait() is bounded by the communicator's timeout (default 600 s); when it passes,
// wait() throws CollectiveTimeout naming the collective, its number, its group and the
// ranks that had not arrived (parallel/mpi/watchdog.h). The caller ends the job.
#pragma once

#include <mpi.h>

#include <memory>

#include "peng/core/error.h"
#include "peng/parallel/communicator.h"

namespace peng {

class MpiCommunicator : public Communicator {
 public:
  // Takes ownership of `comm` (freed in the destructor unless it is MPI_COMM_WORLD).
  MpiCommunicator(MPI_Comm comm, std::string name);
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  MPI_Comm comm() const { return comm_; }
  // Seconds a collective or transfer may take before wait() throws CollectiveTimeout
  // naming the ranks that did not arrive (see watchdog.h); inherited by split().
  void set_timeout(double seconds) { timeout_s_ = seconds; }
  double timeout() const { return timeout_s_; }

  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) override;
  std::unique_ptr<Work> all_reduce(Tensor& t, ReduceOp op) override;
  std::unique_ptr<Work> reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) override;
  std::unique_ptr<Work> all_gather(const Tensor& in, Tensor& out) override;
  std::unique_ptr<Work> all_to_all_v(const Tensor& in, const std::vector<int64_t>& send_counts,
                                     Tensor& out, const std::vector<int64_t>& recv_counts) override;
  std::unique_ptr<Work> broadcast(Tensor& t, int root) override;
  std::unique_ptr<Work> send(const Tensor& t, int dst, int tag) override;
  std::unique_ptr<Work> recv(Tensor& t, int src, int tag) override;
  void barrier() override;

  // For a device communicator over the same members that has no watchdog of its own
  // (NcclCommunicator keeps this group as its shadow and issues nothing on it): records
  // that this rank entered the device group's collective `seq`, and names the members that
  // had not (watchdog.h's describe_missing; waits at most grace_s for answers).
  void note_entered(int64_t seq);
  std::string describe_missing(int64_t seq, double grace_s);

 private:
  MPI_Comm comm_;
  std::string name_;
  int rank_ = 0, size_ = 1;
  double timeout_s_ = 600;
  int64_t seq_ = 0;  // collectives issued on this group
  std::string watch_key_;
};

// A collective that did not complete within the communicator's timeout.
class CollectiveTimeout : public Error {
 public:
  using Error::Error;
};

// The world communicator; initialises MPI on first use.
MpiCommunicator& mpi_world();

// When MPI is running with more than one rank, MPI_Abort(world, code): every rank of the
// job ends (none is left waiting in a collective). Otherwise does nothing.
void abort_job(int code);

}  // namespace peng
