#include "parallel/mpi/mpi_communicator.h"

#include <cstdlib>
#include <algorithm>
#include <chrono>
#include <functional>
#include <thread>

#include "core/error.h"
#include "parallel/mpi/watchdog.h"

namespace peng {

namespace {

std::string mpi_error_string(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, buf, &len);
  return std::string(buf, size_t(len));
}

void check_mpi(int code, const std::string& what) {
  if (code != MPI_SUCCESS) throw Error(what + ": " + mpi_error_string(code));
}

// Elementwise reductions of 16-bit floats stored as uint16, accumulating in f32.
template <float (*Load)(uint16_t), uint16_t (*Store)(float), bool Max>
void half_op(void* in, void* inout, int* len, MPI_Datatype*) {
  const uint16_t* a = static_cast<const uint16_t*>(in);
  uint16_t* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) {
    const float x = Load(a[i]), y = Load(b[i]);
    b[i] = Store(Max ? (x > y ? x : y) : x + y);
  }
}

struct HalfOps {
  MPI_Op bf16_sum, bf16_max, f16_sum, f16_max;
  HalfOps() {
    MPI_Op_create(&half_op<bf16_to_f32, f32_to_bf16, false>, 1, &bf16_sum);
    MPI_Op_create(&half_op<bf16_to_f32, f32_to_bf16, true>, 1, &bf16_max);
    MPI_Op_create(&half_op<f16_to_f32, f32_to_f16, false>, 1, &f16_sum);
    MPI_Op_create(&half_op<f16_to_f32, f32_to_f16, true>, 1, &f16_max);
  }
};
const HalfOps& half_ops() {
  static HalfOps ops;
  return ops;
}

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::kF32:
      return MPI_FLOAT;
    case DType::kF64:
      return MPI_DOUBLE;
    case DType::kI32:
      return MPI_INT32_T;
    case DType::kU16:
    case DType::kBF16:
    case DType::kF16:
      return MPI_UINT16_T;
  }
  throw Error("no MPI datatype for this dtype");
}

MPI_Op mpi_op(DType t, ReduceOp op) {
  const bool max = op == ReduceOp::kMax;
  if (t == DType::kBF16) return max ? half_ops().bf16_max : half_ops().bf16_sum;
  if (t == DType::kF16) return max ? half_ops().f16_max : half_ops().f16_sum;
  return max ? MPI_MAX : MPI_SUM;
}

// Divides every element of t by n (the kAvg finish step).
template <typename T, typename Div>
void divide_each(T* p, int64_t k, Div div) {
  for (int64_t i = 0; i < k; ++i) p[i] = div(p[i]);
}

void divide(Tensor& t, int n) {
  const int64_t k = t.numel();
  void* p = t.raw_data();
  switch (t.dtype()) {
    case DType::kF32:
      if ((n & (n - 1)) == 0) {  // a power of two: multiplying by 1/n is exact division
        const float inv = 1.0f / float(n);
        return divide_each(static_cast<float*>(p), k, [inv](float x) { return x * inv; });
      }
      return divide_each(static_cast<float*>(p), k, [n](float x) { return x / float(n); });
    case DType::kF64:
      return divide_each(static_cast<double*>(p), k, [n](double x) { return x / n; });
    case DType::kI32:
      return divide_each(static_cast<int32_t*>(p), k, [n](int32_t x) { return x / n; });
    case DType::kU16:
      return divide_each(static_cast<uint16_t*>(p), k, [n](uint16_t x) { return uint16_t(x / n); });
    case DType::kBF16:
      return divide_each(static_cast<uint16_t*>(p), k,
                         [n](uint16_t b) { return f32_to_bf16(bf16_to_f32(b) / float(n)); });
    case DType::kF16:
      return divide_each(static_cast<uint16_t*>(p), k,
                         [n](uint16_t b) { return f32_to_f16(f16_to_f32(b) / float(n)); });
  }
}

// The finish step of a reduction: kAvg divides the sum by the group size.
std::function<void()> finish_for(ReduceOp op, Tensor t, int group_size) {
  if (op != ReduceOp::kAvg) return {};
  return [t, group_size]() mutable { divide(t, group_size); };
}

// Polls the request until it completes or the group's timeout passes. Spins briefly for
// small latency-bound collectives, then yields and sleeps so a communication thread
// waiting through a long backward pass does not take a core from the compute threads.
class MpiWork : public Work {
 public:
  struct Watch {
    MPI_Comm comm;
    std::string group;
    int64_t seq;  // 0 for point-to-point
    double timeout_s;
  };
  MpiWork(std::string what, Watch watch, std::function<void()> finish = {})
      : what_(std::move(what)), watch_(std::move(watch)), finish_(std::move(finish)) {}
  MPI_Request* request() { return &request_; }
  void wait() override {
    if (done_) return;
    done_ = true;
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t polls = 0;; ++polls) {
      int complete = 0;
      check_mpi(MPI_Test(&request_, &complete, MPI_STATUS_IGNORE), what_);
      if (complete) break;
      if (polls < 1000) continue;
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (waited > watch_.timeout_s) timed_out();
      if (waited < 1e-3) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(waited < 0.1 ? 20 : 500));
      }
    }
    if (finish_) finish_();
  }

 private:
  [[noreturn]] void timed_out() {
    std::string msg = detail::concat(what_, watch_.seq ? " (collective #" : "",
                                     watch_.seq ? std::to_string(watch_.seq) + ")" : "",
                                     " did not complete within ", watch_.timeout_s, " s");
    if (watch_.seq) {
      msg += ": " + watch::describe_missing(watch_.comm, watch_.group, watch_.seq,
                                            std::min(5.0, watch_.timeout_s));
    }
    throw CollectiveTimeout(msg);
  }

  std::string what_;
  Watch watch_;
  std::function<void()> finish_;
  MPI_Request request_ = MPI_REQUEST_NULL;
  bool done_ = false;
};

// Numbers the next collective of the group and records that this process entered it.
MpiWork::Watch enter_collective(MPI_Comm comm, const std::string& group, int64_t& seq,
                                double timeout_s) {
  watch::note_entered(group, ++seq);
  return {comm, group, seq, timeout_s};
}

void check_host(const char* op, const Tensor& t, const std::string& group) {
  PENG_CHECK(t.device().is_cpu(), op, " on group ", group, ": MPI takes host tensors, got ",
             t.str());
  PENG_CHECK(t.numel() <= INT32_MAX, op, " on group ", group, ": tensor ", t.str(),
             " exceeds MPI's int count");
}

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name)
    : comm_(comm), name_(std::move(name)) {
  check_mpi(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_WORLD && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key, const std::string& name) {
  MPI_Comm out;
  check_mpi(MPI_Comm_split(comm_, color, key, &out), "split of group " + name_);
  auto child = std::make_unique<MpiCommunicator>(out, name);
  child->set_timeout(timeout_s_);
  return child;
}

std::unique_ptr<Work> MpiCommunicator::all_reduce(Tensor& t, ReduceOp op) {
  check_host("all_reduce", t, name_);
  const std::string what = "all_reduce on group " + name_;
  auto work = std::make_unique<MpiWork>(what, enter_collective(comm_, name_, seq_, timeout_s_),
                                        finish_for(op, t, size_));
  check_mpi(MPI_Iallreduce(MPI_IN_PLACE, t.raw_data(), int(t.numel()), mpi_type(t.dtype()),
                           mpi_op(t.dtype(), op), comm_, work->request()),
            what);
  return work;
}

std::unique_ptr<Work> MpiCommunicator::reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) {
  check_host("reduce_scatter", in, name_);
  check_host("reduce_scatter", out, name_);
  PENG_CHECK(in.dtype() == out.dtype() && in.numel() == out.numel() * size_,
             "reduce_scatter on group ", name_, ": in ", in.str(), " must hold ", size_,
             " chunks of out ", out.str());
  const std::string what = "reduce_scatter on group " + name_;
  auto work = std::make_unique<MpiWork>(what, enter_collective(comm_, name_, seq_, timeout_s_),
                                        finish_for(op, out, size_));
  check_mpi(MPI_Ireduce_scatter_block(in.raw_data(), out.raw_data(), int(out.numel()),
                                      mpi_type(in.dtype()), mpi_op(in.dtype(), op), comm_,
                                      work->request()),
            what);
  return work;
}

std::unique_ptr<Work> MpiCommunicator::all_gather(const Tensor& in, Tensor& out) {
  check_host("all_gather", in, name_);
  check_host("all_gather", out, name_);
  PENG_CHECK(in.dtype() == out.dtype() && out.numel() == in.numel() * size_, "all_gather on group ",
             name_, ": out ", out.str(), " must hold ", size_, " chunks of in ", in.str());
  const std::string what = "all_gather on group " + name_;
  auto work =
      std::make_unique<MpiWork>(what, enter_collective(comm_, name_, seq_, timeout_s_));
  check_mpi(MPI_Iallgather(in.raw_data(), int(in.numel()), mpi_type(in.dtype()), out.raw_data(),
                           int(in.numel()), mpi_type(in.dtype()), comm_, work->request()),
            what);
  return work;
}

std::unique_ptr<Work> MpiCommunicator::broadcast(Tensor& t, int root) {
  check_host("broadcast", t, name_);
  PENG_CHECK(root >= 0 && root < size_, "broadcast on group ", name_, ": root ", root,
             " outside [0, ", size_, ")");
  const std::string what = "broadcast on group " + name_;
  auto work =
      std::make_unique<MpiWork>(what, enter_collective(comm_, name_, seq_, timeout_s_));
  check_mpi(
      MPI_Ibcast(t.raw_data(), int(t.numel()), mpi_type(t.dtype()), root, comm_, work->request()),
      what);
  return work;
}

std::unique_ptr<Work> MpiCommunicator::send(const Tensor& t, int dst, int tag) {
  check_host("send", t, name_);
  const std::string what = "send to rank " + std::to_string(dst) + " of group " + name_;
  auto work = std::make_unique<MpiWork>(what, MpiWork::Watch{comm_, name_, 0, timeout_s_});
  check_mpi(MPI_Isend(t.raw_data(), int(t.numel()), mpi_type(t.dtype()), dst, tag, comm_,
                      work->request()),
            what);
  return work;
}

std::unique_ptr<Work> MpiCommunicator::recv(Tensor& t, int src, int tag) {
  check_host("recv", t, name_);
  const std::string what = "recv from rank " + std::to_string(src) + " of group " + name_;
  auto work = std::make_unique<MpiWork>(what, MpiWork::Watch{comm_, name_, 0, timeout_s_});
  check_mpi(MPI_Irecv(t.raw_data(), int(t.numel()), mpi_type(t.dtype()), src, tag, comm_,
                      work->request()),
            what);
  return work;
}

void MpiCommunicator::barrier() {
  const std::string what = "barrier on group " + name_;
  MpiWork work(what, enter_collective(comm_, name_, seq_, timeout_s_));
  check_mpi(MPI_Ibarrier(comm_, work.request()), what);
  work.wait();
}

MpiCommunicator& mpi_world() {
  static MpiCommunicator* world = [] {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      // Open MPI 4.1's non-blocking all-reduce (libnbc) picks a binomial reduce+broadcast
      // for in-place buffers and small groups, up to 2.5x slower than the ring the
      // blocking MPI_Allreduce uses (docs/PERFORMANCE.md). Ring unless the user chose.
      setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", /*overwrite=*/0);
      int provided = 0;
      check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided),
                "MPI_Init_thread");
      std::atexit([] {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (finalized) return;
        watch::stop();
        MPI_Finalize();
      });
    }
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size > 1) watch::start();
    return new MpiCommunicator(MPI_COMM_WORLD, "world");  // lives until exit
  }();
  return *world;
}

void abort_job(int code) {
  int initialized = 0, finalized = 0, size = 1;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

}  // namespace peng
