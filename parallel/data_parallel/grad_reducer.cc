#include "parallel/data_parallel/grad_reducer.h"

#include <algorithm>

#include "core/error.h"

namespace peng {

GradReducer::GradReducer(ParameterSet& params, Communicator& dp, Backend& backend,
                         int64_t bucket_bytes, Mode mode, Communicator* expert_dp,
                         const std::vector<FlatSpan>* units)
    : params_(params), backend_(backend), mode_(mode) {
  PENG_CHECK(!units || mode == Mode::kReduceScatter, "GradReducer: units need reduce-scatter");
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
    add_buckets(all[begin].offset, hi, group, bucket_bytes, units);
    end = begin;
  }
  taken_.resize(buckets_.size());
  if (mode_ == Mode::kReduceScatter) {
    const Device dev = params.flat_grads().device();
    shard_ = Tensor::zeros({shard_numel_}, DType::kF32, dev);
    chunk_ = Tensor::zeros({max_chunk_}, DType::kF32, dev);
  }
  thread_ = std::thread([this] { run(); });
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
  max_chunk_ = std::max(max_chunk_, chunk);
  shard_numel_ += chunk;
}

GradReducer::~GradReducer() {
  params_.set_grads_ready_hook({});
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
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
}

void GradReducer::on_ready(int64_t offset) {
  if (!armed_) return;
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
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return done_ == buckets_.size(); });
  armed_ = false;
  if (error_) std::rethrow_exception(error_);
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
    try {
      if (!failed) reduce(buckets_[index], accumulate, taken_[index]);
      taken_[index] = Tensor();  // a taken gradient is freed once reduced
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++done_;
    }
    cv_.notify_all();
  }
}

void GradReducer::reduce(const Bucket& b, bool accumulate, const Tensor& taken) {
  Communicator& group = *b.group;
  if (mode_ == Mode::kAllReduce) {
    Tensor region = params_.flat_grads().flat_view(b.offset, {b.numel});
    group.all_reduce(region, ReduceOp::kSum)->wait();
    return;
  }
  Tensor in = taken;
  if (!in.defined()) in = params_.flat_grads().flat_view(b.offset, {b.numel});
  if (in.numel() != b.padded) {
    const Tensor region = in;
    if (!staging_.defined()) {  // on first use: ZeRO 2/3's taken gradients come padded
      staging_ = Tensor::zeros({max_staging_}, DType::kF32, region.device());
    }
    in = staging_.flat_view(0, {b.padded});
    in.flat_view(0, {b.numel}).copy_from(region);
    in.flat_view(b.numel, {b.padded - b.numel}).zero();
  }
  const int64_t chunk = b.padded / group.size();
  Tensor out = shard_.flat_view(b.shard_offset, {chunk});
  if (!accumulate) {
    group.reduce_scatter(in, out, ReduceOp::kSum)->wait();
    return;
  }
  Tensor part = chunk_.flat_view(0, {chunk});
  group.reduce_scatter(in, part, ReduceOp::kSum)->wait();
  backend_.add(out, part, out);
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
