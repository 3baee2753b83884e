// NcclCommunicator (contract in nccl_communicator.h).
//
// Layout: one shared State (NCCL communicator, comm stream, the "compute reached here"
// event, the batch of deferred point-to-point ops) behind the communicator and its Works.
// Each operation: check the tensors -> issue deferred send/recv -> comm stream waits on the
// compute stream -> enqueue on the comm stream -> record a completion event. Work::wait()
// polls that event against the deadline and NCCL's asynchronous error, aborting the NCCL
// communicator on either, then makes the compute stream wait on the event.
#include "peng/parallel/nccl/nccl_communicator.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "peng/core/cuda/memory.h"
#include "peng/core/error.h"
#include "peng/parallel/make_communicator.h"

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 12, 0)
#error "peng's NCCL communicator needs NCCL >= 2.12 (ncclAvg, ncclGetLastError)"
#endif
// ncclCommSplit arrived in NCCL 2.18; before it, split goes through MPI and a new unique id.
// (Define PENG_NCCL_NO_COMM_SPLIT to build that path with a newer NCCL.)
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 18, 0) && !defined(PENG_NCCL_NO_COMM_SPLIT)
#define PENG_NCCL_COMM_SPLIT 1
#else
#define PENG_NCCL_COMM_SPLIT 0
#endif

namespace peng {
namespace nccl_detail {

namespace {

std::string nccl_message(ncclResult_t r, ncclComm_t comm) {
  std::string s = ncclGetErrorString(r);
  const char* last = ncclGetLastError(comm);
  if (last && *last) s += std::string(" (") + last + ")";
  return s;
}

void check_cuda(cudaError_t e, const std::string& what) {
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so later calls do not see it
    throw Error(what + ": CUDA " + cudaGetErrorString(e));
  }
}

void check_nccl(ncclResult_t r, const std::string& what, ncclComm_t comm = nullptr) {
  if (r != ncclSuccess) throw Error(what + ": NCCL " + nccl_message(r, comm));
}

// Makes `device` current for a scope and restores the previous one.
class DeviceGuard {
 public:
  DeviceGuard(int device, const std::string& what) : device_(device) {
    if (cudaGetDevice(&prev_) != cudaSuccess) {
      cudaGetLastError();
      prev_ = -1;
    }
    if (prev_ != device_) {
      check_cuda(cudaSetDevice(device_), what + ": cudaSetDevice(" + std::to_string(device_) + ")");
    }
  }
  ~DeviceGuard() {
    if (prev_ >= 0 && prev_ != device_) cudaSetDevice(prev_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int device_;
  int prev_ = -1;
};

struct NcclType {
  ncclDataType_t type;
  size_t count;
};

// NCCL's element type and count for `t`; u16 moves as bytes and cannot be reduced.
NcclType nccl_type(const Tensor& t, bool reduce, const std::string& what) {
  const size_t n = size_t(t.numel());
  switch (t.dtype()) {
    case DType::kF32:
      return {ncclFloat32, n};
    case DType::kF64:
      return {ncclFloat64, n};
    case DType::kI32:
      return {ncclInt32, n};
    case DType::kBF16:
      return {ncclBfloat16, n};
    case DType::kF16:
      return {ncclFloat16, n};
    case DType::kU16:
      PENG_CHECK(!reduce, what, ": NCCL cannot reduce u16 tensors (", t.str(),
                 "); reduce f32, f64, bf16, f16 or i32, or use the host-staged communicator "
                 "(parallel.comm = mpi)");
      return {ncclUint8, 2 * n};
  }
  throw Error(what + ": no NCCL type for " + t.str());
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kAvg:
      return ncclAvg;
    case ReduceOp::kMax:
      return ncclMax;
  }
  throw Error("unknown ReduceOp");
}

}  // namespace

// The completion event of one enqueued operation (or of one batch of send/recv).
struct Completion {
  cudaEvent_t event = nullptr;
  bool recorded = false;  // the ops were enqueued and the event recorded after them
  std::string error;      // why they were never enqueued, when that failed
  ~Completion() {
    if (event) cudaEventDestroy(event);
  }
};

struct PendingP2p {
  bool is_send;
  Tensor t;
  int peer;
  NcclType type;
  std::string op;
};

struct State : std::enable_shared_from_this<State> {
  ncclComm_t comm = nullptr;  // null once aborted
  int device = 0, rank = 0, size = 1;
  std::string name;
  double timeout_s = 0;
  cudaStream_t compute = nullptr;  // not owned; nullptr: the legacy default stream
  cudaStream_t stream = nullptr;   // owned: the comm stream
  cudaEvent_t ready = nullptr;     // owned: re-recorded on `compute` before each op
  // Collectives issued on this rank (the "#n" of messages, the same on every member) and
  // send/recv issued (this rank's own count).
  uint64_t collectives = 0, transfers = 0;
  // The same members over MPI, never used for traffic: each collective is noted there, and
  // on a timeout the watchdog asks the members how far they got (mpi/watchdog.h).
  std::unique_ptr<MpiCommunicator> shadow;
  std::string abort_reason;  // set once the NCCL communicator was aborted
  std::vector<PendingP2p> pending;
  std::shared_ptr<Completion> pending_done;
  Tensor barrier_buf;                             // f32[1] on the device, stays zero
  MpiCommunicator* bootstrap = nullptr;           // split without ncclCommSplit
  std::unique_ptr<Communicator> owned_bootstrap;  // ... keeps its sub-group here

  ~State();
  std::string where(const std::string& op) const { return op + " on group " + name; }
  std::string where(const std::string& op, uint64_t seq, bool collective = true) const {
    return where(op) + (collective ? " (collective #" : " (transfer #") + std::to_string(seq) + ")";
  }
  void check_usable(const std::string& op) const {
    PENG_CHECK(abort_reason.empty(), where(op), ": the group's NCCL communicator was aborted (",
               abort_reason, ")");
  }
  void abort_comm(const std::string& reason);
  void order_after_compute(const std::string& what);
  std::shared_ptr<Completion> new_completion(const std::string& what);
  void record(Completion& c, const std::string& what);
  void flush_p2p();
  std::unique_ptr<Work> enqueue(const std::string& op, std::vector<Tensor> keep,
                                const std::function<ncclResult_t()>& launch);
  std::unique_ptr<Work> defer_p2p(const std::string& op, bool is_send, const Tensor& t, int peer);
};

namespace {

class NcclWork : public Work {
 public:
  // `seq`: the collective's number, or with `collective` false the transfer's.
  NcclWork(std::shared_ptr<State> state, std::shared_ptr<Completion> done, std::string op,
           uint64_t seq, bool collective, std::vector<Tensor> keep)
      : state_(std::move(state)),
        done_(std::move(done)),
        op_(std::move(op)),
        seq_(seq),
        collective_(collective),
        keep_(std::move(keep)) {}

  // Not waited: still issue deferred send/recv and order the compute stream after the op.
  ~NcclWork() override {
    if (waited_) return;
    try {
      if (!done_->recorded) state_->flush_p2p();
      if (done_->recorded) {
        DeviceGuard guard(state_->device, op_);
        cudaStreamWaitEvent(state_->compute, done_->event, 0);
      }
    } catch (const std::exception&) {
      // Destructors do not throw; the failure shows on the next operation of the group.
    }
  }

  void wait() override {
    if (waited_) return;
    State& s = *state_;
    const std::string what = s.where(op_, seq_, collective_);
    if (!done_->recorded) {
      s.check_usable(op_);
      s.flush_p2p();
    }
    PENG_CHECK(done_->recorded, what, " was never issued: ", done_->error);
    DeviceGuard guard(s.device, what);
    const auto start = std::chrono::steady_clock::now();
    for (int polls = 0;; ++polls) {
      const cudaError_t q = cudaEventQuery(done_->event);
      if (q == cudaSuccess) break;
      if (q != cudaErrorNotReady) {
        cudaGetLastError();
        const std::string msg = what + ": CUDA " + cudaGetErrorString(q);
        s.abort_comm(msg);
        throw Error(msg);
      }
      s.check_usable(op_);  // another Work of the group timed out
      ncclResult_t async = ncclSuccess;
      const ncclResult_t r = ncclCommGetAsyncError(s.comm, &async);
      if (r != ncclSuccess) async = r;
      if (async != ncclSuccess && async != ncclInProgress) {
        const std::string msg = what + ": NCCL " + nccl_message(async, s.comm);
        s.abort_comm(msg);
        throw Error(msg + "; the NCCL communicator was aborted");
      }
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > s.timeout_s) {
        std::string msg = detail::concat(what, " did not complete within ", s.timeout_s, " s");
        // Who is missing, asked over MPI (the control mesh) before the abort.
        msg += collective_ && s.shadow
                   ? ": " + s.shadow->describe_missing(int64_t(seq_), std::min(5.0, s.timeout_s))
                   : " (a rank of the group did not arrive, or is stuck)";
        s.abort_comm(msg);
        throw Error(msg + "; the NCCL communicator was aborted");
      }
      if (polls < 256) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(waited < 1.0 ? 20 : 500));
      }
    }
    waited_ = true;
    keep_.clear();
    check_cuda(cudaStreamWaitEvent(s.compute, done_->event, 0),
               what + ": cudaStreamWaitEvent on the compute stream");
  }

 private:
  std::shared_ptr<State> state_;
  std::shared_ptr<Completion> done_;
  std::string op_;
  uint64_t seq_;
  bool collective_;
  std::vector<Tensor> keep_;  // the tensors stay alive until wait() returns
  bool waited_ = false;
};

// The comm stream drained within `timeout_s`.
bool drain(cudaStream_t stream, double timeout_s) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    const cudaError_t q = cudaStreamQuery(stream);
    if (q == cudaSuccess) return true;
    if (q != cudaErrorNotReady) {
      cudaGetLastError();
      return false;
    }
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >
        timeout_s) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

void check_tensor(const State& s, const std::string& op, const Tensor& t) {
  PENG_CHECK(t.defined() && t.device() == Device::cuda(s.device), s.where(op),
             ": NCCL takes tensors on cuda:", s.device, ", got ", t.str());
}

// parent.split(...) as the MpiCommunicator it is.
std::unique_ptr<MpiCommunicator> mpi_split(MpiCommunicator& parent, int color, int key,
                                           const std::string& name) {
  std::unique_ptr<Communicator> sub = parent.split(color, key, name);
  PENG_CHECK(dynamic_cast<MpiCommunicator*>(sub.get()), "the MPI split into ", name,
             " is not an MPI group");
  return std::unique_ptr<MpiCommunicator>(static_cast<MpiCommunicator*>(sub.release()));
}

// A State around a fresh NCCL communicator: its rank and size, comm stream and events.
std::shared_ptr<State> make_state(ncclComm_t comm, int device, std::string name, double timeout_s,
                                  cudaStream_t compute, const std::string& what) {
  auto s = std::make_shared<State>();
  s->comm = comm;  // from here on the State destroys it
  s->device = device;
  s->name = std::move(name);
  s->timeout_s = timeout_s;
  s->compute = compute;
  DeviceGuard guard(device, what);
  check_nccl(ncclCommUserRank(comm, &s->rank), what + ": ncclCommUserRank", comm);
  check_nccl(ncclCommCount(comm, &s->size), what + ": ncclCommCount", comm);
  check_cuda(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking),
             what + ": cudaStreamCreateWithFlags");
  check_cuda(cudaEventCreateWithFlags(&s->ready, cudaEventDisableTiming),
             what + ": cudaEventCreateWithFlags");
  s->barrier_buf = Tensor::zeros({1}, DType::kF32, Device::cuda(device));
  return s;
}

}  // namespace

State::~State() {
  cudaSetDevice(device);
  if (comm) {
    // Operations still in flight (Works dropped without wait): give them the timeout.
    if (drain(stream, timeout_s)) {
      ncclCommDestroy(comm);
    } else {
      ncclCommAbort(comm);
    }
  }
  if (ready) cudaEventDestroy(ready);
  if (stream) cudaStreamDestroy(stream);
}

void State::abort_comm(const std::string& reason) {
  if (!abort_reason.empty()) return;
  abort_reason = reason;
  for (PendingP2p& p : pending) p.t = Tensor();
  pending.clear();
  if (pending_done) pending_done->error = "the group was aborted (" + reason + ")";
  pending_done.reset();
  if (comm) {
    DeviceGuard guard(device, where("abort"));
    ncclCommAbort(comm);
    comm = nullptr;
  }
}

void State::order_after_compute(const std::string& what) {
  check_cuda(cudaEventRecord(ready, compute), what + ": cudaEventRecord on the compute stream");
  check_cuda(cudaStreamWaitEvent(stream, ready, 0),
             what + ": cudaStreamWaitEvent on the comm stream");
}

std::shared_ptr<Completion> State::new_completion(const std::string& what) {
  auto c = std::make_shared<Completion>();
  check_cuda(cudaEventCreateWithFlags(&c->event, cudaEventDisableTiming),
             what + ": cudaEventCreateWithFlags");
  return c;
}

void State::record(Completion& c, const std::string& what) {
  check_cuda(cudaEventRecord(c.event, stream), what + ": cudaEventRecord on the comm stream");
  c.recorded = true;
}

void State::flush_p2p() {
  if (pending.empty()) return;
  std::vector<PendingP2p> batch;
  batch.swap(pending);
  std::shared_ptr<Completion> done = std::move(pending_done);
  pending_done.reset();
  const std::string what =
      where(batch.size() == 1
                ? batch[0].op
                : batch[0].op + " (and " + std::to_string(batch.size() - 1) + " more send/recv)");
  try {
    check_usable(batch[0].op);
    DeviceGuard guard(device, what);
    order_after_compute(what);
    // One group: the sends and recvs of a batch progress together (no ordering deadlock).
    check_nccl(ncclGroupStart(), what + ": ncclGroupStart", comm);
    ncclResult_t r = ncclSuccess;
    std::string failed;
    for (const PendingP2p& p : batch) {
      r = p.is_send ? ncclSend(p.t.raw_data(), p.type.count, p.type.type, p.peer, comm, stream)
                    : ncclRecv(p.t.raw_data(), p.type.count, p.type.type, p.peer, comm, stream);
      if (r != ncclSuccess) {
        failed = where(p.op);
        break;
      }
    }
    const ncclResult_t end = ncclGroupEnd();
    check_nccl(r, failed, comm);
    check_nccl(end, what + ": ncclGroupEnd", comm);
    record(*done, what);
  } catch (const Error& e) {
    done->error = e.what();
    throw;
  }
}

std::unique_ptr<Work> State::enqueue(const std::string& op, std::vector<Tensor> keep,
                                     const std::function<ncclResult_t()>& launch) {
  check_usable(op);
  DeviceGuard guard(device, where(op));
  flush_p2p();
  order_after_compute(where(op));
  const uint64_t seq = ++collectives;
  if (shadow) shadow->note_entered(int64_t(seq));
  std::shared_ptr<Completion> done = new_completion(where(op, seq));
  check_nccl(launch(), where(op, seq), comm);
  record(*done, where(op, seq));
  return std::make_unique<NcclWork>(shared_from_this(), std::move(done), op, seq, true,
                                    std::move(keep));
}

std::unique_ptr<Work> State::defer_p2p(const std::string& op, bool is_send, const Tensor& t,
                                       int peer) {
  check_tensor(*this, op, t);
  PENG_CHECK(peer >= 0 && peer < size, where(op), ": rank ", peer, " outside [0, ", size, ")");
  const NcclType type = nccl_type(t, false, where(op));
  check_usable(op);
  if (!pending_done) {
    DeviceGuard guard(device, where(op));
    pending_done = new_completion(where(op));
  }
  pending.push_back({is_send, t, peer, type, op});
  const uint64_t seq = ++transfers;
  return std::make_unique<NcclWork>(shared_from_this(), pending_done, op, seq, false,
                                    std::vector<Tensor>{t});
}

}  // namespace nccl_detail

using nccl_detail::check_cuda;
using nccl_detail::check_nccl;
using nccl_detail::check_tensor;
using nccl_detail::nccl_op;
using nccl_detail::nccl_type;
using nccl_detail::NcclType;
using nccl_detail::State;

NcclCommunicator::NcclCommunicator(MpiCommunicator& bootstrap, int device, std::string name,
                                   double timeout_s, cudaStream_t compute_stream) {
  const std::string what =
      detail::concat("NcclCommunicator for group ", name, " (rank ", bootstrap.rank(), " of ",
                     bootstrap.size(), ", cuda:", device, ")");
  PENG_CHECK(timeout_s > 0, what, ": the collective timeout must be > 0 s, got ", timeout_s);
  // Local set-up first; failures are pooled below, so every rank throws (none is left
  // waiting in ncclCommInitRank for a rank that gave up).
  std::string local_error;
  ncclUniqueId id;
  std::memset(&id, 0, sizeof id);
  try {
    int count = 0;
    check_cuda(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
    PENG_CHECK(device >= 0 && device < count, "device ", device, " is not one of the ", count,
               " visible CUDA device(s)");
    // The device stays current: NCCL binds to it, and so does this rank's compute.
    check_cuda(cudaSetDevice(device), "cudaSetDevice");
    if (bootstrap.rank() == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  } catch (const Error& e) {
    local_error = e.what();
  }
  // One MPI all_reduce (sum) over the bootstrap group carries rank 0's unique id (zeros
  // elsewhere) and the number of ranks whose set-up failed.
  static_assert(sizeof(ncclUniqueId) % sizeof(int32_t) == 0);
  constexpr int64_t kWords = sizeof(ncclUniqueId) / sizeof(int32_t);
  Tensor msg = Tensor::zeros({kWords + 1}, DType::kI32);
  if (bootstrap.rank() == 0) std::memcpy(msg.data<int32_t>(), &id, sizeof id);
  msg.data<int32_t>()[kWords] = local_error.empty() ? 0 : 1;
  bootstrap.all_reduce(msg, ReduceOp::kSum)->wait();
  const int failed = msg.data<int32_t>()[kWords];
  if (failed > 0) {
    throw Error(
        local_error.empty()
            ? detail::concat(what, ": ", failed, " other rank(s) of the group failed to set up")
            : detail::concat(
                  what, ": ", local_error,
                  failed > 1 ? detail::concat(" (and ", failed - 1, " other rank(s) failed too)")
                             : std::string()));
  }
  std::memcpy(&id, msg.data<int32_t>(), sizeof id);
  std::unique_ptr<MpiCommunicator> shadow =
      nccl_detail::mpi_split(bootstrap, 0, bootstrap.rank(), name);
  ncclComm_t comm = nullptr;
  check_nccl(ncclCommInitRank(&comm, bootstrap.size(), id, bootstrap.rank()),
             what + ": ncclCommInitRank");
  state_ = nccl_detail::make_state(comm, device, std::move(name), timeout_s, compute_stream, what);
  state_->bootstrap = &bootstrap;
  state_->shadow = std::move(shadow);
}

NcclCommunicator::NcclCommunicator(std::shared_ptr<State> state) : state_(std::move(state)) {}

NcclCommunicator::~NcclCommunicator() = default;

int NcclCommunicator::rank() const { return state_->rank; }
int NcclCommunicator::size() const { return state_->size; }
const std::string& NcclCommunicator::name() const { return state_->name; }
int NcclCommunicator::device() const { return state_->device; }
cudaStream_t NcclCommunicator::comm_stream() const { return state_->stream; }
cudaStream_t NcclCommunicator::compute_stream() const { return state_->compute; }

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key, const std::string& name) {
  State& s = *state_;
  const std::string what = s.where("split into " + name);
  PENG_CHECK(color >= 0, what, ": color must be >= 0, got ", color);
  s.check_usable("split");
  nccl_detail::DeviceGuard guard(s.device, what);
  s.flush_p2p();
#if PENG_NCCL_COMM_SPLIT
  std::unique_ptr<MpiCommunicator> shadow =
      s.shadow ? nccl_detail::mpi_split(*s.shadow, color, key, name) : nullptr;
  ncclComm_t child = nullptr;
  check_nccl(ncclCommSplit(s.comm, color, key, &child, nullptr), what + ": ncclCommSplit", s.comm);
  auto state = nccl_detail::make_state(child, s.device, name, s.timeout_s, s.compute, what);
  state->shadow = std::move(shadow);
  return std::unique_ptr<Communicator>(new NcclCommunicator(std::move(state)));
#else
  PENG_CHECK(s.bootstrap, what, ": no bootstrap group to split");
  std::unique_ptr<Communicator> sub = s.bootstrap->split(color, key, name);
  auto* mpi = dynamic_cast<MpiCommunicator*>(sub.get());
  PENG_CHECK(mpi, what, ": the bootstrap split is not an MPI group");
  auto child = std::make_unique<NcclCommunicator>(*mpi, s.device, name, s.timeout_s, s.compute);
  child->state_->owned_bootstrap = std::move(sub);
  return child;
#endif
}

std::unique_ptr<Work> NcclCommunicator::all_reduce(Tensor& t, ReduceOp op) {
  State& s = *state_;
  check_tensor(s, "all_reduce", t);
  const NcclType ty = nccl_type(t, true, s.where("all_reduce"));
  void* p = t.raw_data();
  return s.enqueue("all_reduce", {t}, [&] {
    return ncclAllReduce(p, p, ty.count, ty.type, nccl_op(op), s.comm, s.stream);
  });
}

std::unique_ptr<Work> NcclCommunicator::reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) {
  State& s = *state_;
  check_tensor(s, "reduce_scatter", in);
  check_tensor(s, "reduce_scatter", out);
  PENG_CHECK(in.dtype() == out.dtype() && in.numel() == out.numel() * s.size,
             s.where("reduce_scatter"), ": in ", in.str(), " must hold ", s.size, " chunks of out ",
             out.str());
  const NcclType ty = nccl_type(out, true, s.where("reduce_scatter"));
  return s.enqueue("reduce_scatter", {in, out}, [&] {
    return ncclReduceScatter(in.raw_data(), out.raw_data(), ty.count, ty.type, nccl_op(op), s.comm,
                             s.stream);
  });
}

std::unique_ptr<Work> NcclCommunicator::all_gather(const Tensor& in, Tensor& out) {
  State& s = *state_;
  check_tensor(s, "all_gather", in);
  check_tensor(s, "all_gather", out);
  PENG_CHECK(in.dtype() == out.dtype() && out.numel() == in.numel() * s.size, s.where("all_gather"),
             ": out ", out.str(), " must hold ", s.size, " chunks of in ", in.str());
  const NcclType ty = nccl_type(in, false, s.where("all_gather"));
  return s.enqueue("all_gather", {in, out}, [&] {
    return ncclAllGather(in.raw_data(), out.raw_data(), ty.count, ty.type, s.comm, s.stream);
  });
}

std::unique_ptr<Work> NcclCommunicator::all_to_all_v(const Tensor& in,
                                                     const std::vector<int64_t>& send_counts,
                                                     Tensor& out,
                                                     const std::vector<int64_t>& recv_counts) {
  State& s = *state_;
  const std::string what = s.where("all_to_all_v");
  check_tensor(s, "all_to_all_v", in);
  check_tensor(s, "all_to_all_v", out);
  PENG_CHECK(in.dtype() == out.dtype(), what, ": in ", in.str(), " and out ", out.str(),
             " differ in dtype");
  const auto check_counts = [&](const std::vector<int64_t>& counts, const Tensor& t,
                                const char* name) {
    PENG_CHECK(int(counts.size()) == s.size, what, ": ", counts.size(), " ", name, " for ", s.size,
               " ranks");
    int64_t sum = 0;
    for (int64_t c : counts) {
      PENG_CHECK(c >= 0, what, ": negative ", name);
      sum += c;
    }
    PENG_CHECK(sum == t.numel(), what, ": ", name, " add up to ", sum, " elements but ", t.str(),
               " holds ", t.numel());
  };
  check_counts(send_counts, in, "send counts");
  check_counts(recv_counts, out, "receive counts");
  // Per element: NCCL's type and how many of its units one tensor element is (u16: 2 bytes).
  const NcclType ty = nccl_type(in, false, what);
  const size_t units = in.dtype() == DType::kU16 ? 2 : 1;  // u16 moves as two bytes
  const size_t bytes = dtype_size(in.dtype());
  auto* src = static_cast<const char*>(in.raw_data());
  auto* dst = static_cast<char*>(out.raw_data());
  return s.enqueue("all_to_all_v", {in, out}, [&]() -> ncclResult_t {
    ncclResult_t r = ncclGroupStart();
    if (r != ncclSuccess) return r;
    size_t send_at = 0, recv_at = 0;
    for (int peer = 0; peer < s.size && r == ncclSuccess; ++peer) {
      const size_t sc = size_t(send_counts[size_t(peer)]), rc = size_t(recv_counts[size_t(peer)]);
      if (sc > 0) r = ncclSend(src + send_at * bytes, sc * units, ty.type, peer, s.comm, s.stream);
      if (r == ncclSuccess && rc > 0) {
        r = ncclRecv(dst + recv_at * bytes, rc * units, ty.type, peer, s.comm, s.stream);
      }
      send_at += sc;
      recv_at += rc;
    }
    const ncclResult_t end = ncclGroupEnd();
    return r != ncclSuccess ? r : end;
  });
}

std::unique_ptr<Work> NcclCommunicator::broadcast(Tensor& t, int root) {
  State& s = *state_;
  check_tensor(s, "broadcast", t);
  PENG_CHECK(root >= 0 && root < s.size, s.where("broadcast"), ": root ", root, " outside [0, ",
             s.size, ")");
  const NcclType ty = nccl_type(t, false, s.where("broadcast"));
  void* p = t.raw_data();
  return s.enqueue("broadcast", {t},
                   [&] { return ncclBroadcast(p, p, ty.count, ty.type, root, s.comm, s.stream); });
}

std::unique_ptr<Work> NcclCommunicator::send(const Tensor& t, int dst, int /*tag*/) {
  return state_->defer_p2p("send to rank " + std::to_string(dst), true, t, dst);
}

std::unique_ptr<Work> NcclCommunicator::recv(Tensor& t, int src, int /*tag*/) {
  return state_->defer_p2p("recv from rank " + std::to_string(src), false, t, src);
}

void NcclCommunicator::barrier() {
  State& s = *state_;
  void* p = s.barrier_buf.raw_data();
  s.enqueue("barrier", {}, [&] {
     return ncclAllReduce(p, p, 1, ncclFloat32, ncclSum, s.comm, s.stream);
   })->wait();
}

void NcclCommunicator::abort() { state_->abort_comm("abort() called on this rank"); }

// ---- parallel/make_communicator.h entry points of a build with NCCL ----

bool compiled_with_nccl() { return true; }

std::unique_ptr<Communicator> make_nccl_communicator(MpiCommunicator& bootstrap, int device,
                                                     const std::string& name, double timeout_s) {
  // Ordered against the stream the CUDA backend computes on (core/cuda/memory.h).
  return std::make_unique<NcclCommunicator>(bootstrap, device, name, timeout_s,
                                            static_cast<cudaStream_t>(cuda::stream(device)));
}

}  // namespace peng
