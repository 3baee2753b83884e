// Collective benchmark (nccl-tests style): peng::MpiCommunicator against raw MPI on the same
// buffers, for all_reduce, reduce_scatter and all_gather, f32 and bf16.
//
//   mpirun -np N build/bin/collective_bench [--min-bytes 4096] [--max-bytes 67108864]
//       [--step 4] [--ops all_reduce,reduce_scatter,all_gather] [--dtypes f32,bf16]
//       [--seconds 0.3] [--max-iters 200] [--warmup 3] [--json] [--fixed-order] [--avg]
// bench/collective_bench.sh builds it and runs it at -np 2 and -np 4.
//
// Method. For each (op, dtype, size) every variant below runs `warmup` untimed iterations,
// then `iters` timed ones (iters chosen by rank 0 from the warm-up so that each variant
// takes about --seconds, at least 5); the variants are interleaved iteration by iteration
// so the noise of a shared machine falls on all alike, and the order within an iteration
// rotates (ours, raw, raw_nb; raw, raw_nb, ours; ...) because the order biases the result:
// with Open MPI 4.1 on shared memory, the collective run right after a blocking one was up
// to 3x faster (--fixed-order keeps one order, to see it). Each
// timed iteration starts after an MPI_Barrier; its time is the maximum over ranks
// (MPI_Reduce MAX over the per-iteration times). The table reports the median iteration, and
// the ratio also for the best iteration of each (robust to bursts of load from other
// processes on a shared machine).
//
// Sizes and bandwidths follow nccl-tests: `bytes` is the full buffer (all_reduce: the
// tensor; reduce_scatter: the input, size() chunks; all_gather: the output, size() chunks);
// algbw = bytes / time; busbw = algbw * 2(n-1)/n for all_reduce, algbw * (n-1)/n for
// reduce_scatter and all_gather.
//
// Variants (the peer of `ours` is `raw`; the others explain a gap between them):
//   ours     peng::MpiCommunicator op(...)->wait() (kSum; MPI_I* + the Work handle)
//   raw      blocking MPI_Allreduce(MPI_IN_PLACE) / MPI_Reduce_scatter_block / MPI_Allgather
//            on the same buffers; for bf16 on the same uint16 buffers with MPI_SUM on
//            MPI_UINT16_T (same bytes moved, built-in op)
//   raw_nb   the non-blocking call our communicator makes (MPI_Iallreduce, ...) + MPI_Wait:
//            ours vs raw_nb isolates our wrapper, raw_nb vs raw MPI's non-blocking path
//   raw_uop  bf16 only: blocking MPI with a bf16-sum user op defined in this file (inline
//            conversions), i.e. the same arithmetic as ours through the blocking path
//   ours_avg with --avg: ours with ReduceOp::kAvg (the sum, then the division on this rank)
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "peng/core/dtype.h"
#include "peng/core/tensor.h"
#include "peng/parallel/mpi/mpi_communicator.h"

namespace peng {
namespace {

enum class Op { kAllReduce, kReduceScatter, kAllGather };
const char* op_name(Op op) {
  switch (op) {
    case Op::kAllReduce:
      return "all_reduce";
    case Op::kReduceScatter:
      return "reduce_scatter";
    case Op::kAllGather:
      return "all_gather";
  }
  return "?";
}

struct Options {
  int64_t min_bytes = 4096, max_bytes = int64_t(64) << 20, step = 4;
  std::vector<Op> ops = {Op::kAllReduce, Op::kReduceScatter, Op::kAllGather};
  std::vector<DType> dtypes = {DType::kF32, DType::kBF16};
  double seconds = 0.3;
  int max_iters = 200, min_iters = 5, warmup = 3;
  bool json = false;
  bool fixed_order = false;  // no rotation of the variants' order (to see the order bias)
  bool avg = false;          // also time ours with ReduceOp::kAvg (all_reduce, reduce_scatter)
};

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    if (end > pos) out.push_back(s.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

[[noreturn]] void usage_error(const std::string& msg) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) std::fprintf(stderr, "error: collective_bench: %s\n", msg.c_str());
  MPI_Abort(MPI_COMM_WORLD, 2);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error("missing value after " + a);
      return argv[++i];
    };
    if (a == "--min-bytes") {
      o.min_bytes = std::atoll(value().c_str());
    } else if (a == "--max-bytes") {
      o.max_bytes = std::atoll(value().c_str());
    } else if (a == "--step") {
      o.step = std::atoll(value().c_str());
    } else if (a == "--seconds") {
      o.seconds = std::atof(value().c_str());
    } else if (a == "--max-iters") {
      o.max_iters = std::atoi(value().c_str());
    } else if (a == "--min-iters") {
      o.min_iters = std::atoi(value().c_str());
    } else if (a == "--warmup") {
      o.warmup = std::atoi(value().c_str());
    } else if (a == "--json") {
      o.json = true;
    } else if (a == "--fixed-order") {
      o.fixed_order = true;
    } else if (a == "--avg") {
      o.avg = true;
    } else if (a == "--ops") {
      o.ops.clear();
      for (const auto& s : split_commas(value())) {
        if (s == "all_reduce") {
          o.ops.push_back(Op::kAllReduce);
        } else if (s == "reduce_scatter") {
          o.ops.push_back(Op::kReduceScatter);
        } else if (s == "all_gather") {
          o.ops.push_back(Op::kAllGather);
        } else {
          usage_error("unknown op " + s + " (all_reduce, reduce_scatter, all_gather)");
        }
      }
    } else if (a == "--dtypes") {
      o.dtypes.clear();
      for (const auto& s : split_commas(value())) {
        if (s == "f32") {
          o.dtypes.push_back(DType::kF32);
        } else if (s == "bf16") {
          o.dtypes.push_back(DType::kBF16);
        } else {
          usage_error("unknown dtype " + s + " (f32, bf16)");
        }
      }
    } else if (a == "--help" || a == "-h") {
      int rank = 0;
      MPI_Comm_rank(MPI_COMM_WORLD, &rank);
      if (rank == 0)
        std::printf(
            "usage: mpirun -np N collective_bench [--min-bytes B] [--max-bytes B] [--step K]\n"
            "  [--ops all_reduce,reduce_scatter,all_gather] [--dtypes f32,bf16] [--seconds S]\n"
            "  [--min-iters N] [--max-iters N] [--warmup N] [--json] [--fixed-order] [--avg]\n");
      std::exit(0);  // mpi_world()'s exit handler stops the watchdog and finalises MPI
    } else {
      usage_error("unknown argument " + a + " (see --help)");
    }
  }
  if (o.min_bytes < 64 || o.max_bytes < o.min_bytes || o.step < 2 || o.seconds <= 0 ||
      o.min_iters < 1 || o.max_iters < o.min_iters || o.warmup < 0) {
    usage_error("bad sizes, step, seconds or iteration counts");
  }
  return o;
}

// bf16 sum through the blocking MPI path with core/dtype.h's inline conversions (the
// raw_uop peer: what a user op costs without our non-blocking wrapper).
void bf16_sum_inline(void* in, void* inout, int* len, MPI_Datatype*) {
  const uint16_t* a = static_cast<const uint16_t*>(in);
  uint16_t* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = f32_to_bf16(bf16_to_f32(a[i]) + bf16_to_f32(b[i]));
}

struct Variant {
  std::string name;
  std::function<void()> run;
  std::vector<double> times;  // per timed iteration, this rank
};

double now() { return MPI_Wtime(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string human_bytes(int64_t b) {
  char buf[32];
  if (b >= (int64_t(1) << 20)) {
    std::snprintf(buf, sizeof(buf), "%lldM", (long long)(b >> 20));
  } else {
    std::snprintf(buf, sizeof(buf), "%lldK", (long long)(b >> 10));
  }
  return buf;
}

// Fills t with `value` in its dtype.
void fill(Tensor& t, float value) {
  if (t.dtype() == DType::kF32) {
    std::fill(t.data<float>(), t.data<float>() + t.numel(), value);
  } else {
    std::fill(static_cast<uint16_t*>(t.raw_data()),
              static_cast<uint16_t*>(t.raw_data()) + t.numel(), f32_to_bf16(value));
  }
}
float element(const Tensor& t, int64_t i) {
  return t.dtype() == DType::kF32 ? t.data<float>()[i]
                                  : bf16_to_f32(static_cast<const uint16_t*>(t.raw_data())[i]);
}

class Bench {
 public:
  Bench(const Options& o, MpiCommunicator& comm)
      : o_(o), comm_(comm), n_(comm.size()), rank_(comm.rank()) {
    MPI_Op_create(&bf16_sum_inline, 1, &bf16_uop_);
  }
  ~Bench() { MPI_Op_free(&bf16_uop_); }

  void run() {
    if (rank_ == 0) print_header();
    for (Op op : o_.ops) {
      for (DType dt : o_.dtypes) {
        for (int64_t bytes = o_.min_bytes; bytes <= o_.max_bytes; bytes *= o_.step) {
          run_one(op, dt, bytes);
        }
      }
    }
    if (rank_ == 0) print_summary();
  }

 private:
  void print_header() {
    std::printf(
        "# collective_bench: %d ranks, Open MPI %d.%d, median of timed iterations, max "
        "over ranks\n",
        n_, OMPI_MAJOR_VERSION, OMPI_MINOR_VERSION);
    std::printf("# busbw = algbw * %s; ratio = ours busbw / raw busbw (median, best iteration)\n",
                "2(n-1)/n (all_reduce) or (n-1)/n (reduce_scatter, all_gather)");
    std::printf("%-14s %-5s %7s %5s | %10s %8s %8s | %10s %8s %8s | %7s %7s | %10s %10s", "op",
                "dtype", "bytes", "iters", "ours us", "algbw", "busbw", "raw us", "algbw", "busbw",
                "ratio", "ratio", "raw_nb us", "raw_uop us");
    if (o_.avg) std::printf(" %11s", "ours_avg us");
    std::printf("\n%-14s %-5s %7s %5s | %10s %8s %8s | %10s %8s %8s | %7s %7s | %10s %10s\n", "",
                "", "", "", "", "GB/s", "GB/s", "", "GB/s", "GB/s", "median", "best", "", "");
    std::fflush(stdout);
  }

  void print_summary() {
    std::printf("# worst ours/raw busbw ratio: %.3f (%s)\n", worst_ratio_, worst_what_.c_str());
    std::fflush(stdout);
  }

  void run_one(Op op, DType dt, int64_t bytes) {
    const int64_t esize = int64_t(dtype_size(dt));
    // Element count of the full buffer, a multiple of n so it splits into n chunks.
    int64_t count = bytes / esize / n_ * n_;
    if (count < n_) return;
    const int64_t chunk = count / n_;
    const int64_t full_bytes = count * esize;
    const MPI_Datatype mdt = dt == DType::kF32 ? MPI_FLOAT : MPI_UINT16_T;

    // Buffers: all_reduce works in place on `full`; reduce_scatter reads `full` (our Tensor and
    // raw MPI read the very same memory) and writes `part`; all_gather reads `part`, writes
    // `full`. Zeros keep repeated in-place sums finite; the correctness check below uses
    // rank-dependent values.
    Tensor full = Tensor::zeros({count}, dt);
    Tensor part = Tensor::zeros({chunk}, dt);
    check(op, dt, full, part);
    fill(full, 0.0f);
    fill(part, 0.0f);

    void* fp = full.raw_data();
    void* pp = part.raw_data();
    const int c = int(count), k = int(chunk);
    MPI_Comm w = comm_.comm();
    std::vector<Variant> vs;
    switch (op) {
      case Op::kAllReduce:
        vs.push_back({"ours", [&] { comm_.all_reduce(full, ReduceOp::kSum)->wait(); }, {}});
        vs.push_back({"raw", [&] { MPI_Allreduce(MPI_IN_PLACE, fp, c, mdt, MPI_SUM, w); }, {}});
        vs.push_back({"raw_nb",
                      [&] {
                        MPI_Request r;
                        MPI_Iallreduce(MPI_IN_PLACE, fp, c, mdt, MPI_SUM, w, &r);
                        MPI_Wait(&r, MPI_STATUS_IGNORE);
                      },
                      {}});
        if (dt == DType::kBF16) {
          vs.push_back(
              {"raw_uop", [&] { MPI_Allreduce(MPI_IN_PLACE, fp, c, mdt, bf16_uop_, w); }, {}});
        }
        if (o_.avg) {
          vs.push_back({"ours_avg", [&] { comm_.all_reduce(full, ReduceOp::kAvg)->wait(); }, {}});
        }
        break;
      case Op::kReduceScatter:
        vs.push_back(
            {"ours", [&] { comm_.reduce_scatter(full, part, ReduceOp::kSum)->wait(); }, {}});
        vs.push_back({"raw", [&] { MPI_Reduce_scatter_block(fp, pp, k, mdt, MPI_SUM, w); }, {}});
        vs.push_back({"raw_nb",
                      [&] {
                        MPI_Request r;
                        MPI_Ireduce_scatter_block(fp, pp, k, mdt, MPI_SUM, w, &r);
                        MPI_Wait(&r, MPI_STATUS_IGNORE);
                      },
                      {}});
        if (dt == DType::kBF16) {
          vs.push_back(
              {"raw_uop", [&] { MPI_Reduce_scatter_block(fp, pp, k, mdt, bf16_uop_, w); }, {}});
        }
        if (o_.avg) {
          vs.push_back(
              {"ours_avg", [&] { comm_.reduce_scatter(full, part, ReduceOp::kAvg)->wait(); }, {}});
        }
        break;
      case Op::kAllGather:
        vs.push_back({"ours", [&] { comm_.all_gather(part, full)->wait(); }, {}});
        vs.push_back({"raw", [&] { MPI_Allgather(pp, k, mdt, fp, k, mdt, w); }, {}});
        vs.push_back({"raw_nb",
                      [&] {
                        MPI_Request r;
                        MPI_Iallgather(pp, k, mdt, fp, k, mdt, w, &r);
                        MPI_Wait(&r, MPI_STATUS_IGNORE);
                      },
                      {}});
        break;
    }

    // Warm-up, timed to choose the iteration count (rank 0 decides for everyone).
    double warm = 0;
    for (auto& v : vs) {
      for (int i = 0; i < o_.warmup; ++i) {
        MPI_Barrier(w);
        const double t0 = now();
        v.run();
        warm = std::max(warm, now() - t0);
      }
    }
    int iters = o_.min_iters;
    if (warm > 0) {
      iters = int(std::clamp(o_.seconds / warm, double(o_.min_iters), double(o_.max_iters)));
    } else {
      iters = o_.max_iters;
    }
    MPI_Bcast(&iters, 1, MPI_INT, 0, w);

    for (int i = 0; i < iters; ++i) {
      const size_t first = o_.fixed_order ? 0 : size_t(i) % vs.size();
      for (size_t j = 0; j < vs.size(); ++j) {
        Variant& v = vs[(first + j) % vs.size()];
        MPI_Barrier(w);
        const double t0 = now();
        v.run();
        v.times.push_back(now() - t0);
      }
    }

    // Per iteration, the slowest rank.
    std::vector<double> med(vs.size()), mean(vs.size()), best(vs.size());
    for (size_t j = 0; j < vs.size(); ++j) {
      std::vector<double> worst(size_t(iters), 0.0);
      MPI_Reduce(vs[j].times.data(), worst.data(), iters, MPI_DOUBLE, MPI_MAX, 0, w);
      if (rank_ == 0) {
        med[j] = median(worst);
        best[j] = *std::min_element(worst.begin(), worst.end());
        double s = 0;
        for (double t : worst) s += t;
        mean[j] = s / iters;
      }
    }
    if (rank_ != 0) return;

    const double factor = op == Op::kAllReduce ? 2.0 * (n_ - 1) / n_ : double(n_ - 1) / n_;
    auto algbw = [&](double t) { return double(full_bytes) / t / 1e9; };
    auto busbw = [&](double t) { return algbw(t) * factor; };
    const double ratio = med[1] > 0 ? med[1] / med[0] : 0;  // = busbw ours / busbw raw
    const double ratio_best = best[1] > 0 ? best[1] / best[0] : 0;
    auto cell = [&](const char* name) {
      char buf[32] = "-";
      for (size_t j = 0; j < vs.size(); ++j) {
        if (vs[j].name == name) std::snprintf(buf, sizeof(buf), "%.1f", med[j] * 1e6);
      }
      return std::string(buf);
    };
    std::printf(
        "%-14s %-5s %7s %5d | %10.1f %8.3f %8.3f | %10.1f %8.3f %8.3f | %7.3f %7.3f | %10.1f %10s",
        op_name(op), dtype_name(dt), human_bytes(full_bytes).c_str(), iters, med[0] * 1e6,
        algbw(med[0]), busbw(med[0]), med[1] * 1e6, algbw(med[1]), busbw(med[1]), ratio, ratio_best,
        med[2] * 1e6, cell("raw_uop").c_str());
    if (o_.avg) std::printf(" %11s", cell("ours_avg").c_str());
    std::printf("\n");
    if (ratio < worst_ratio_) {
      worst_ratio_ = ratio;
      worst_what_ = std::string(op_name(op)) + " " + dtype_name(dt) + " " + human_bytes(full_bytes);
    }
    if (o_.json) {
      std::string line = "{\"op\":\"" + std::string(op_name(op)) + "\",\"dtype\":\"" +
                         dtype_name(dt) + "\",\"ranks\":" + std::to_string(n_) +
                         ",\"bytes\":" + std::to_string(full_bytes) +
                         ",\"iters\":" + std::to_string(iters);
      char buf[256];
      for (size_t j = 0; j < vs.size(); ++j) {
        std::snprintf(buf, sizeof(buf),
                      ",\"%s\":{\"median_s\":%.9g,\"mean_s\":%.9g,\"min_s\":%.9g,"
                      "\"algbw_gbs\":%.6g,\"busbw_gbs\":%.6g}",
                      vs[j].name.c_str(), med[j], mean[j], best[j], algbw(med[j]), busbw(med[j]));
        line += buf;
      }
      std::snprintf(buf, sizeof(buf), ",\"ratio_busbw\":%.6g,\"ratio_busbw_best\":%.6g}", ratio,
                    ratio_best);
      line += buf;
      std::printf("JSON %s\n", line.c_str());
    }
    std::fflush(stdout);
  }

  // One run of `ours` on rank-dependent values, checked against the expected result.
  void check(Op op, DType dt, Tensor& full, Tensor& part) {
    const int64_t chunk = part.numel();
    bool ok = true;
    float got = 0, want = 0;
    const float tri = float(n_ * (n_ + 1) / 2);
    switch (op) {
      case Op::kAllReduce:
        fill(full, float(rank_ + 1));
        comm_.all_reduce(full, ReduceOp::kSum)->wait();
        got = element(full, full.numel() - 1), want = tri;
        ok = element(full, 0) == want && got == want;
        break;
      case Op::kReduceScatter:
        fill(full, float(rank_ + 1));
        comm_.reduce_scatter(full, part, ReduceOp::kSum)->wait();
        got = element(part, chunk - 1), want = tri;
        ok = element(part, 0) == want && got == want;
        break;
      case Op::kAllGather:
        fill(part, float(rank_ + 1));
        comm_.all_gather(part, full)->wait();
        for (int r = 0; r < n_ && ok; ++r) {
          got = element(full, r * chunk + chunk - 1), want = float(r + 1);
          ok = element(full, r * chunk) == want && got == want;
        }
        break;
    }
    int bad = ok ? 0 : 1, any_bad = 0;
    MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, comm_.comm());
    if (any_bad) {
      if (!ok) {
        std::fprintf(stderr,
                     "error: collective_bench: %s %s of %lld elements on rank %d: got %g, "
                     "want %g\n",
                     op_name(op), dtype_name(dt), (long long)full.numel(), rank_, double(got),
                     double(want));
      }
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
  }

  const Options& o_;
  MpiCommunicator& comm_;
  int n_, rank_;
  MPI_Op bf16_uop_;
  double worst_ratio_ = 1e9;
  std::string worst_what_;
};

}  // namespace
}  // namespace peng

int main(int argc, char** argv) {
  try {
    peng::MpiCommunicator& world = peng::mpi_world();  // MPI_Init_thread(MULTIPLE), as `peng`
    const peng::Options o = peng::parse(argc, argv);
    if (world.size() < 2) {
      std::fprintf(stderr, "error: collective_bench: run it under mpirun -np N with N >= 2\n");
      return 2;
    }
    peng::Bench bench(o, world);
    bench.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    peng::abort_job(1);
    return 1;
  }
  return 0;
}
