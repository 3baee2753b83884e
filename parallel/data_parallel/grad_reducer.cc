#include "peng/parallel/data_parallel/grad_reducer.h"

#include <algorithm>
#include <chrono>

#include "peng/core/error.h"

namespace peng {

GradReducer::GradReducer(ParameterSet& params, Communicator& dp, Backend& backend,
                         const Options& options)
    : params_(params),
      backend_(backend),
      mode_(options.mode),
      device_(params.flat_grads().device()),
      issue_(options.issue.value_or(
          dp.stream_ordered() && (!options.expert_dp || options.expert_dp->stream_ordered())
              ? Issue::kInline
              : Issue::kThread)),
      reduce_dtype_(options.reduce_dtype) {
  Communicator* expert_dp = options.expert_dp;
  const std::vector<FlatSpan>* units = options.units;
  PENG_CHECK(!units || mode_ == Mode::kReduceScatter, "GradReducer: units need reduce-scatter");
  PENG_CHECK(reduce_dtype_ == DType::kF32 || reduce_dtype_ == DType::kBF16,
             "GradReducer: gradients reduce in f32 or bf16, not ", dtype_name(reduce_dtype_));
  // Runs of parameters reducing over the same group, from the end of the buffer.
  const auto group_of = [&](const Parameter& p) -> Communicator& {
    return p.expert_parallel && expert_dp ? *expert_dp : dp;
  };
  const std::vector<Parameter>& all = params.all();
  for (size_t end = all.size(); end > 0;) {
    size_t begin = end - 1;
    Communicator& group = group_of(all[begin]);
    while (begin > 0 && &group_of(all[begin - 1]) == &group) --begin;
    const int64_t hi = end == all.size() ? params.numel() : all[end].offset;
    add_buckets(all[begin].offset, hi, group, options.bucket_bytes, units);
    end = begin;
  }
  taken_.resize(buckets_.size());
  if (mode_ == Mode::kReduceScatter) {
    shard_ = Tensor::zeros({shard_numel_}, DType::kF32, params.flat_grads().device());
  }
  if (issue_ == Issue::kThread) thread_ = std::thread([this] { run(); });
  params_.set_grads_ready_hook([this](int64_t offset) { on_ready(offset); });
}

void GradReducer::add_buckets(int64_t lo_run, int64_t hi_run, Communicator& group,
                              int64_t bucket_bytes, const std::vector<FlatSpan>* units) {
  if (units) {
    for (auto u = units->rbegin(); u != units->rend(); ++u) {
      if (u->offset < lo_run || u->offset >= hi_run) continue;
      PENG_CHECK(u->offset + u->numel <= hi_run, "GradReducer: unit [", u->offset, ", +", u->numel,
                 ") mixes reduction groups");
      add_bucket(u->offset, u->offset + u->numel, group);
    }
    return;
  }
  const int64_t n = group.size();
  const int64_t per_bucket = std::max<int64_t>(n, bucket_bytes / 4 / n * n);
  for (int64_t hi = hi_run; hi > lo_run;) {
    const int64_t lo = std::max<int64_t>(lo_run, hi - per_bucket);
    add_bucket(lo, hi, group);
    hi = lo;
  }
}

void GradReducer::add_bucket(int64_t lo, int64_t hi, Communicator& group) {
  const int64_t n = group.size(), r = group.rank();
  const int64_t numel = hi - lo, padded = (numel + n - 1) / n * n, chunk = padded / n;
  buckets_.push_back({lo, numel, padded, shard_numel_, &group});
  const int64_t valid = std::clamp<int64_t>(numel - r * chunk, 0, chunk);
  if (valid > 0) owned_.push_back({lo + r * chunk, valid, shard_numel_});
  if (padded != numel) max_staging_ = std::max(max_staging_, padded);
  shard_numel_ += chunk;
}

GradReducer::~GradReducer() {
  params_.set_grads_ready_hook({});
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (InFlight& f : in_flight_) {  // a failed pass: let the collectives finish with their buffers
    try {
      f.work->wait();
    } catch (const std::exception&) {
      // Destructors do not throw; the pass's error was reported by wait().
    }
  }
}

void GradReducer::arm(bool accumulate) {
  PENG_CHECK(!armed_, "GradReducer::arm() twice without wait()");
  PENG_CHECK(!accumulate || mode_ == Mode::kReduceScatter,
             "GradReducer: accumulate needs the reduce-scatter mode");
  std::lock_guard<std::mutex> lock(mu_);
  armed_ = true;
  accumulate_ = accumulate;
  next_ = 0;
  done_ = 0;
  in_flight_.clear();
}

void GradReducer::on_ready(int64_t offset) {
  if (!armed_) return;
  if (issue_ == Issue::kInline) {
    for (; next_ < buckets_.size() && buckets_[next_].offset >= offset; ++next_) {
      if (grad_source_) taken_[next_] = grad_source_(next_);
      in_flight_.push_back(issue(next_, accumulate_));
    }
    return;
  }
  bool queued = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (; next_ < buckets_.size() && buckets_[next_].offset >= offset; ++next_) {
      if (grad_source_) taken_[next_] = grad_source_(next_);
      queue_.push_back(next_);
      queued = true;
    }
  }
  if (queued) cv_.notify_all();
}

void GradReducer::wait() {
  PENG_CHECK(armed_, "GradReducer::wait() without arm()");
  on_ready(0);
  if (issue_ == Issue::kInline) {
    armed_ = false;
    for (; !in_flight_.empty(); in_flight_.pop_front()) complete(in_flight_.front());
    return;
  }
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return done_ == buckets_.size(); });
  armed_ = false;
  if (error_) std::rethrow_exception(error_);
}

double GradReducer::take_comm_seconds() {
  std::lock_guard<std::mutex> lock(mu_);
  const double s = comm_seconds_;
  comm_seconds_ = 0;
  return s;
}

void GradReducer::run() {
  for (;;) {
    size_t index;
    bool accumulate, failed;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;  // never starts a collective once destruction began
      index = queue_.front();
      queue_.pop_front();
      accumulate = accumulate_;
      failed = error_ != nullptr;
    }
    const auto start = std::chrono::steady_clock::now();
    try {
      if (!failed) {
        InFlight f = issue(index, accumulate);
        complete(f);
      }
      taken_[index] = Tensor();  // a taken gradient is freed once reduced
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++done_;
      comm_seconds_ +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    cv_.notify_all();
  }
}

Tensor GradReducer::scratch(Scratch use, int64_t n, DType dtype) {
  const Device dev = device_;
  if (issue_ == Issue::kInline) return Tensor::empty({n}, dtype, dev);
  Tensor& t = reused_[use];
  if (!t.defined() || t.dtype() != dtype || t.numel() < n) t = Tensor::empty({n}, dtype, dev);
  return t.flat_view(0, {n});
}

Tensor GradReducer::wire_input(const Bucket& b, const Tensor& taken) {
  // ZeRO 2/3's taken gradients come padded; flat buffer ranges do not.
  const Tensor grad = taken.defined() ? taken : params_.flat_grads().flat_view(b.offset, {b.numel});
  const bool pad = mode_ == Mode::kReduceScatter && grad.numel() != b.padded;
  if (!pad && reduce_dtype_ == DType::kF32) return grad;
  const int64_t n = pad ? b.padded : grad.numel();
  Tensor in = scratch(kIn, n, reduce_dtype_);
  Tensor valid = in.flat_view(0, {grad.numel()});
  if (reduce_dtype_ == DType::kF32) {
    valid.copy_from(grad);
  } else {
    backend_.cast(grad, valid);
  }
  if (pad) in.flat_view(grad.numel(), {n - grad.numel()}).zero();
  return in;
}

GradReducer::InFlight GradReducer::issue(size_t index, bool accumulate) {
  const Bucket& b = buckets_[index];
  Communicator& group = *b.group;
  Tensor in = wire_input(b, taken_[index]);
  const bool narrow = reduce_dtype_ != DType::kF32;
  if (mode_ == Mode::kAllReduce) {
    InFlight f{index, {}, group.all_reduce(in, ReduceOp::kSum)};
    if (narrow) {  // widened back into the flat gradient buffer
      Tensor region = params_.flat_grads().flat_view(b.offset, {b.numel});
      f.finish = [this, in, region]() mutable { backend_.cast(in, region); };
    }
    return f;
  }
  const int64_t chunk = b.padded / group.size();
  Tensor out = shard_.flat_view(b.shard_offset, {chunk});
  if (!accumulate && !narrow) {
    return {index, [in] {}, group.reduce_scatter(in, out, ReduceOp::kSum)};
  }
  Tensor part = scratch(kPart, chunk, reduce_dtype_);
  InFlight f{index, {}, group.reduce_scatter(in, part, ReduceOp::kSum)};
  f.finish = [this, in, part, out, accumulate, narrow, chunk]() mutable {
    Tensor wide = part;
    if (narrow) {
      wide = scratch(kWide, chunk, DType::kF32);
      backend_.cast(part, wide);
    }
    if (accumulate) {
      backend_.add(out, wide, out);
    } else {
      out.copy_from(wide);
    }
  };
  return f;
}

void GradReducer::complete(InFlight& f) {
  f.work->wait();
  if (f.finish) f.finish();
  f.finish = nullptr;  // releases the buffers it holds
  taken_[f.bucket] = Tensor();
}

void GradReducer::all_gather_values() {
  PENG_CHECK(mode_ == Mode::kReduceScatter, "GradReducer::all_gather_values without ZeRO");
  Tensor& values = params_.flat_values();
  if (!gather_in_.defined())
    gather_in_ = Tensor::zeros({shard_numel_}, DType::kF32, values.device());
  std::vector<std::unique_ptr<Work>> works;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    const Bucket& b = buckets_[i];
    const int64_t n = b.group->size(), r = b.group->rank();
    const int64_t chunk = b.padded / n;
    Tensor in = gather_in_.flat_view(b.shard_offset, {chunk});
    const int64_t valid = std::clamp<int64_t>(b.numel - r * chunk, 0, chunk);
    if (valid > 0)
      in.flat_view(0, {valid}).copy_from(values.flat_view(b.offset + r * chunk, {valid}));
    if (valid < chunk) in.flat_view(valid, {chunk - valid}).zero();
    if (b.padded == b.numel) {
      Tensor out = values.flat_view(b.offset, {b.numel});
      works.push_back(b.group->all_gather(in, out));
      continue;
    }
    // A padded bucket lands in one reused buffer: gathered and copied out before the next.
    if (!padded_out_.defined())
      padded_out_ = Tensor::empty({max_staging_}, DType::kF32, in.device());
    Tensor out = padded_out_.flat_view(0, {b.padded});
    b.group->all_gather(in, out)->wait();
    values.flat_view(b.offset, {b.numel}).copy_from(out.flat_view(0, {b.numel}));
  }
  for (auto& w : works) w->wait();
}

}  // namespace peng
