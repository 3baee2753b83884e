#include "peng/parallel/mpi/mpi_communicator.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "peng/core/error.h"
#include "peng/parallel/mpi/watchdog.h"

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

// What a wait needs to turn a hang into an error.
struct Watch {
  std::string what;  // "all_reduce on group dp"
  MPI_Comm comm;
  std::string group;  // its name, for messages
  std::string key;    // its watchdog key: the name and the members' world ranks
  int64_t seq;        // the collective's number in its group; 0 for point-to-point
  double timeout_s;
};

[[noreturn]] void timed_out(const Watch& w) {
  std::string msg = detail::concat(w.what, w.seq ? " (collective #" : "",
                                   w.seq ? std::to_string(w.seq) + ")" : "",
                                   " did not complete within ", w.timeout_s, " s");
  if (w.seq) {
    msg +=
        ": " + watch::describe_missing(w.comm, w.key, w.group, w.seq, std::min(5.0, w.timeout_s));
  }
  throw CollectiveTimeout(msg);
}

using Clock = std::chrono::steady_clock;

class RingReduceScatter;

// Every ring reduce-scatter of the process not yet finished, in issue order. Rings move
// on only when polled (they are point-to-point steps, not one MPI call), so every wait of
// every Work polls them all: a ring progresses while its rank waits on anything else, as
// a native MPI collective would, and no wait order can deadlock.
struct RingProgress {
  std::mutex mu;
  std::deque<std::shared_ptr<RingReduceScatter>> pending;
};
RingProgress& rings() {
  static RingProgress* r = new RingProgress;  // used until exit: never destroyed
  return *r;
}
void progress_rings();  // non-blocking; a no-op when another thread is at it

// Polls until `done()` or the watch's timeout, counted from t0, passes. Spins briefly for
// small latency-bound collectives, then yields and sleeps so a communication thread
// waiting through a long backward pass does not take a core from the compute threads.
template <typename Done>
void wait_until(Done done, const Watch& w, Clock::time_point t0) {
  for (int64_t polls = 0;; ++polls) {
    progress_rings();
    if (done()) return;
    if (polls < 1000) continue;
    const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
    if (waited > w.timeout_s) timed_out(w);
    if (waited < 1e-3) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(waited < 0.1 ? 20 : 500));
    }
  }
}

bool test_all(MPI_Request* requests, int count, const std::string& what) {
  int complete = 0;
  check_mpi(MPI_Testall(count, requests, &complete, MPI_STATUSES_IGNORE), what);
  return complete != 0;
}

// One MPI request and what to do once it completed (kAvg's division, say).
class MpiWork : public Work {
 public:
  MpiWork(Watch watch, std::function<void()> finish = {})
      : watch_(std::move(watch)), finish_(std::move(finish)) {}
  MPI_Request* request() { return &request_; }
  void wait() override {
    if (done_) return;
    wait_until([this] { return test_all(&request_, 1, watch_.what); }, watch_, Clock::now());
    if (finish_) finish_();
    done_ = true;
  }

 private:
  Watch watch_;
  std::function<void()> finish_;
  MPI_Request request_ = MPI_REQUEST_NULL;
  bool done_ = false;
};

// Tags of the ring reduce-scatter's messages: kRingTag + its collective number modulo
// kRingTags; reduce_scatter keeps fewer than kRingTags rings of one group in flight, so
// rings never take each other's messages. User send/recv tags stay below (MPI guarantees
// tags up to 32767).
constexpr int kRingTag = 32000, kRingTags = 767;

// Ring reduce-scatter (n - 1 steps, each moving one chunk to the right neighbour and
// reducing the chunk that arrives from the left), so every rank sends and receives
// (n-1)/n of the buffer once. Open MPI 4.1's MPI_Ireduce_scatter_block reduces the whole
// buffer towards one rank first and is ~3x slower than this (docs/PERFORMANCE.md).
// Step s: send the chunk reduced so far (own chunk r-1 at s = 0), receive the running
// sum of chunk r-s-2 from the left and add own contribution; after step n-2 that is the
// sum of chunk r but for own part, which goes into `out` last (so `out` may be chunk r of
// `in`). Step 0 is posted at issue; poll() takes the next steps.
class RingReduceScatter {
 public:
  RingReduceScatter(Watch watch, const Tensor& in, Tensor& out, MPI_Datatype type, MPI_Op op,
                    int rank, int size)
      : watch_(std::move(watch)),
        tag_(kRingTag + int(watch_.seq % kRingTags)),
        in_(static_cast<const char*>(in.raw_data())),
        out_(static_cast<char*>(out.raw_data())),
        m_(int(out.numel())),
        bytes_(size_t(out.numel()) * dtype_size(out.dtype())),
        type_(type),
        op_(op),
        r_(rank),
        n_(size),
        buf_{std::vector<char>(bytes_), std::vector<char>(bytes_)} {
    post();
  }

  MPI_Comm comm() const { return watch_.comm; }
  const Watch& watch() const { return watch_; }
  bool finished() const { return finished_.load(); }
  // Takes every step whose messages have arrived; never blocks. Under rings().mu.
  void poll() {
    while (!finished_ && test_all(requests_, 2, watch_.what)) {
      char* received = buf_[s_ % 2].data();
      check_mpi(MPI_Reduce_local(chunk(r_ - s_ - 2), received, m_, type_, op_), watch_.what);
      if (s_ == n_ - 2) {
        std::memmove(out_, received, bytes_);
        finished_ = true;
      } else {
        ++s_;
        post();
      }
    }
  }

 private:
  const char* chunk(int i) const { return in_ + size_t((i % n_ + n_) % n_) * bytes_; }
  void post() {
    const void* send = s_ == 0 ? chunk(r_ - 1) : buf_[(s_ - 1) % 2].data();
    check_mpi(MPI_Isend(send, m_, type_, (r_ + 1) % n_, tag_, watch_.comm, &requests_[0]),
              watch_.what);
    check_mpi(MPI_Irecv(buf_[s_ % 2].data(), m_, type_, (r_ - 1 + n_) % n_, tag_, watch_.comm,
                        &requests_[1]),
              watch_.what);
  }

  Watch watch_;
  int tag_;
  const char* in_;
  char* out_;
  int m_;
  size_t bytes_;
  MPI_Datatype type_;
  MPI_Op op_;
  int r_, n_, s_ = 0;
  std::atomic<bool> finished_{false};
  std::vector<char> buf_[2];
  MPI_Request requests_[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
};

void progress_rings() {
  RingProgress& p = rings();
  std::unique_lock<std::mutex> lock(p.mu, std::try_to_lock);
  if (!lock.owns_lock() || p.pending.empty()) return;
  for (auto& ring : p.pending) ring->poll();
  while (!p.pending.empty() && p.pending.front()->finished()) p.pending.pop_front();
}

// Numbers the next collective of the group and records that this process entered it.
Watch enter_collective(const std::string& what, MPI_Comm comm, const std::string& group,
                       const std::string& key, int64_t& seq, double timeout_s) {
  watch::note_entered(key, ++seq);
  return {what, comm, group, key, seq, timeout_s};
}

// "dp#<16 hex digits>": the name and an FNV-1a hash of the members' world ranks, the same on
// every member and distinct for groups of one name with other members.
std::string watch_key(MPI_Comm comm, const std::string& name) {
  int size = 0;
  MPI_Comm_size(comm, &size);
  MPI_Group g, world;
  MPI_Comm_group(comm, &g);
  MPI_Comm_group(MPI_COMM_WORLD, &world);
  std::vector<int> ranks(static_cast<size_t>(size)), world_ranks(static_cast<size_t>(size));
  for (int i = 0; i < size; ++i) ranks[size_t(i)] = i;
  MPI_Group_translate_ranks(g, size, ranks.data(), world, world_ranks.data());
  MPI_Group_free(&g);
  MPI_Group_free(&world);
  uint64_t hash = 14695981039346656037ull;
  for (int r : world_ranks) {
    hash ^= uint64_t(uint32_t(r));
    hash *= 1099511628211ull;
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
  return name.substr(0, 30) + "#" + hex;
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
  watch_key_ = watch_key(comm_, name_);
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
  auto work = std::make_unique<MpiWork>(
      enter_collective(what, comm_, name_, watch_key_, seq_, timeout_s_), finish_for(op, t, size_));
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
  const Watch watch = enter_collective(what, comm_, name_, watch_key_, seq_, timeout_s_);
  if (size_ == 1) {
    out.copy_from(in.view(out.shape()));
    return std::make_unique<MpiWork>(watch);
  }
  // Below kRingTags rings of this group in flight, so their tags stay distinct.
  for (;;) {
    std::shared_ptr<RingReduceScatter> oldest;
    {
      std::lock_guard<std::mutex> lock(rings().mu);
      int64_t mine = 0;
      for (const auto& r : rings().pending) {
        if (r->comm() != comm_ || r->finished()) continue;
        if (!oldest) oldest = r;
        ++mine;
      }
      if (mine < kRingTags - 1) break;
    }
    wait_until([&oldest] { return oldest->finished(); }, oldest->watch(), Clock::now());
  }
  auto ring = std::make_shared<RingReduceScatter>(watch, in, out, mpi_type(in.dtype()),
                                                  mpi_op(in.dtype(), op), rank_, size_);
  {
    std::lock_guard<std::mutex> lock(rings().mu);
    rings().pending.push_back(ring);
  }
  std::function<void()> avg = finish_for(op, out, size_);
  return std::make_unique<MpiWork>(watch, [ring, avg, watch] {
    wait_until([&ring] { return ring->finished(); }, watch, Clock::now());
    if (avg) avg();
  });
}

std::unique_ptr<Work> MpiCommunicator::all_gather(const Tensor& in, Tensor& out) {
  check_host("all_gather", in, name_);
  check_host("all_gather", out, name_);
  PENG_CHECK(in.dtype() == out.dtype() && out.numel() == in.numel() * size_, "all_gather on group ",
             name_, ": out ", out.str(), " must hold ", size_, " chunks of in ", in.str());
  const std::string what = "all_gather on group " + name_;
  auto work =
      std::make_unique<MpiWork>(enter_collective(what, comm_, name_, watch_key_, seq_, timeout_s_));
  check_mpi(MPI_Iallgather(in.raw_data(), int(in.numel()), mpi_type(in.dtype()), out.raw_data(),
                           int(in.numel()), mpi_type(in.dtype()), comm_, work->request()),
            what);
  return work;
}

namespace {
// MPI_Ialltoallv's int counts and displacements for `counts` elements per rank of `t`.
struct AllToAllCounts {
  std::vector<int> counts, displs;
};
AllToAllCounts all_to_all_counts(const std::string& what, const char* name, const Tensor& t,
                                 const std::vector<int64_t>& counts, int size) {
  PENG_CHECK(int(counts.size()) == size, what, ": ", counts.size(), " ", name, " for ", size,
             " ranks");
  AllToAllCounts out;
  int64_t at = 0;
  for (int64_t c : counts) {
    PENG_CHECK(c >= 0 && at + c <= INT32_MAX, what, ": ", name, " ", c,
               " is negative or past MPI's int range");
    out.counts.push_back(int(c));
    out.displs.push_back(int(at));
    at += c;
  }
  PENG_CHECK(at == t.numel(), what, ": ", name, " add up to ", at, " elements but the tensor ",
             t.str(), " holds ", t.numel());
  return out;
}
}  // namespace

std::unique_ptr<Work> MpiCommunicator::all_to_all_v(const Tensor& in,
                                                    const std::vector<int64_t>& send_counts,
                                                    Tensor& out,
                                                    const std::vector<int64_t>& recv_counts) {
  check_host("all_to_all_v", in, name_);
  check_host("all_to_all_v", out, name_);
  const std::string what = "all_to_all_v on group " + name_;
  PENG_CHECK(in.dtype() == out.dtype(), what, ": in ", in.str(), " and out ", out.str(),
             " differ in dtype");
  const auto* a = static_cast<const char*>(in.raw_data());
  const auto* b = static_cast<const char*>(out.raw_data());
  PENG_CHECK(in.numel() == 0 || out.numel() == 0 || a + in.nbytes() <= b || b + out.nbytes() <= a,
             what, ": in ", in.str(), " and out ", out.str(),
             " overlap (MPI_Alltoallv needs them apart)");
  // MPI may read the count arrays until the operation completes: the Work keeps them.
  auto send = std::make_shared<AllToAllCounts>(
      all_to_all_counts(what, "send counts", in, send_counts, size_));
  auto recv = std::make_shared<AllToAllCounts>(
      all_to_all_counts(what, "receive counts", out, recv_counts, size_));
  auto work = std::make_unique<MpiWork>(
      enter_collective(what, comm_, name_, watch_key_, seq_, timeout_s_), [send, recv] {});
  check_mpi(MPI_Ialltoallv(in.raw_data(), send->counts.data(), send->displs.data(),
                           mpi_type(in.dtype()), out.raw_data(), recv->counts.data(),
                           recv->displs.data(), mpi_type(out.dtype()), comm_, work->request()),
            what);
  return work;
}

std::unique_ptr<Work> MpiCommunicator::broadcast(Tensor& t, int root) {
  check_host("broadcast", t, name_);
  PENG_CHECK(root >= 0 && root < size_, "broadcast on group ", name_, ": root ", root,
             " outside [0, ", size_, ")");
  const std::string what = "broadcast on group " + name_;
  auto work =
      std::make_unique<MpiWork>(enter_collective(what, comm_, name_, watch_key_, seq_, timeout_s_));
  check_mpi(
      MPI_Ibcast(t.raw_data(), int(t.numel()), mpi_type(t.dtype()), root, comm_, work->request()),
      what);
  return work;
}

std::unique_ptr<Work> MpiCommunicator::send(const Tensor& t, int dst, int tag) {
  check_host("send", t, name_);
  PENG_CHECK(tag >= 0 && tag < kRingTag, "send on group ", name_, ": tag ", tag, " outside [0, ",
             kRingTag, ")");
  const std::string what = "send to rank " + std::to_string(dst) + " of group " + name_;
  auto work = std::make_unique<MpiWork>(Watch{what, comm_, name_, watch_key_, 0, timeout_s_});
  check_mpi(MPI_Isend(t.raw_data(), int(t.numel()), mpi_type(t.dtype()), dst, tag, comm_,
                      work->request()),
            what);
  return work;
}

std::unique_ptr<Work> MpiCommunicator::recv(Tensor& t, int src, int tag) {
  check_host("recv", t, name_);
  PENG_CHECK(tag >= 0 && tag < kRingTag, "recv on group ", name_, ": tag ", tag, " outside [0, ",
             kRingTag, ")");
  const std::string what = "recv from rank " + std::to_string(src) + " of group " + name_;
  auto work = std::make_unique<MpiWork>(Watch{what, comm_, name_, watch_key_, 0, timeout_s_});
  check_mpi(MPI_Irecv(t.raw_data(), int(t.numel()), mpi_type(t.dtype()), src, tag, comm_,
                      work->request()),
            what);
  return work;
}

void MpiCommunicator::barrier() {
  const std::string what = "barrier on group " + name_;
  MpiWork work(enter_collective(what, comm_, name_, watch_key_, seq_, timeout_s_));
  check_mpi(MPI_Ibarrier(comm_, work.request()), what);
  work.wait();
}

void MpiCommunicator::note_entered(int64_t seq) { watch::note_entered(watch_key_, seq); }

std::string MpiCommunicator::describe_missing(int64_t seq, double grace_s) {
  return watch::describe_missing(comm_, watch_key_, name_, seq, grace_s);
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
    // The communication thread, the watchdog's responder and the main thread call MPI
    // concurrently.
    int level = 0;
    MPI_Query_thread(&level);
    PENG_CHECK(level >= MPI_THREAD_MULTIPLE,
               "this MPI library does not provide MPI_THREAD_MULTIPLE (thread level ", level,
               "), which peng's communication thread and collective watchdog need");
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
