#include "peng/models/nn/expert_dispatch.h"

#include "peng/core/error.h"
#include "peng/models/nn/buffer.h"

namespace peng {

ExpertDispatch::ExpertDispatch(int experts, int topk, const ExpertGroup& group)
    : experts_(experts), topk_(topk), group_(group) {
  PENG_CHECK(experts_ % group_.size() == 0, "ExpertDispatch: ", experts_,
             " experts do not split over ", group_.size(), " expert-parallel ranks");
}

void ExpertDispatch::plan(const Tensor& chosen, Device device) {
  PENG_CHECK(chosen.device().is_cpu() && chosen.dtype() == DType::kI32 && chosen.ndim() == 2 &&
                 chosen.dim(1) == topk_,
             "ExpertDispatch::plan: chosen ", chosen.str(), ", expected host (N, ", topk_, ") i32");
  const int64_t n = chosen.dim(0), m = n * topk_;
  const int ep = group_.size(), local = experts_ / ep, me = group_.rank();
  const int32_t* c = chosen.data<const int32_t>();
  // Counting sort by expert; tokens stay in increasing order within an expert.
  std::vector<int64_t> counts(size_t(experts_), 0), start(size_t(experts_) + 1, 0);
  for (int64_t i = 0; i < m; ++i) {
    PENG_CHECK(c[i] >= 0 && c[i] < experts_, "ExpertDispatch::plan: expert ", c[i], " of ",
               experts_);
    ++counts[size_t(c[i])];
  }
  for (int e = 0; e < experts_; ++e) start[size_t(e) + 1] = start[size_t(e)] + counts[size_t(e)];
  std::vector<int32_t> token(static_cast<size_t>(m)), choice(static_cast<size_t>(m));
  std::vector<int64_t> at(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < m; ++i) {
    const int64_t pos = at[size_t(c[i])]++;
    token[size_t(pos)] = int32_t(i / topk_);
    choice[size_t(pos)] = int32_t(i);
  }
  send_token_ = Tensor::from_vector(token, {m}).to(device);
  send_choice_ = Tensor::from_vector(choice, {m}).to(device);

  // Every rank's counts per expert (ep x E), then who sends what to whom.
  std::vector<int32_t> mine(counts.begin(), counts.end());
  Tensor all = Tensor::from_vector(mine, {experts_});
  if (ep > 1) {  // on the device: ep is a tensor communicator (NCCL takes device tensors)
    const Tensor counts_here = all.to(device);
    Tensor gathered = Tensor::empty({int64_t(ep) * experts_}, DType::kI32, device);
    group_.ep->all_gather(counts_here, gathered)->wait();
    all = gathered.to(Device::cpu());
  }
  const int32_t* from = all.data<const int32_t>();  // from[r * E + e]
  table_ = Tensor::zeros({experts_ + 2 * int64_t(ep) + local}, DType::kI32);
  int32_t* t = table_.data<int32_t>();
  for (int e = 0; e < experts_; ++e) t[e] = int32_t(counts[size_t(e)]);
  for (int r = 0; r < ep; ++r) {
    for (int e = 0; e < local; ++e) {
      t[experts_ + r] += counts[size_t(r * local + e)];                     // sent to r
      t[experts_ + ep + r] += from[size_t(r) * experts_ + me * local + e];  // received from r
      t[experts_ + 2 * ep + e] += from[size_t(r) * experts_ + me * local + e];
    }
  }
  if (ep == 1) return;
  // Received order (source rank, expert, token) <-> expert-major (expert, source rank, token).
  const int64_t rows = [&] {
    int64_t s = 0;
    for (int r = 0; r < ep; ++r) s += t[experts_ + ep + r];
    return s;
  }();
  std::vector<int32_t> to_expert(static_cast<size_t>(rows)), to_source(static_cast<size_t>(rows));
  std::vector<int64_t> block(size_t(ep) * local + 1, 0);  // received offset of (r, e)
  for (int r = 0, i = 0; r < ep; ++r) {
    for (int e = 0; e < local; ++e, ++i) {
      block[size_t(i) + 1] = block[size_t(i)] + from[size_t(r) * experts_ + me * local + e];
    }
  }
  int64_t pos = 0;
  for (int e = 0; e < local; ++e) {
    for (int r = 0; r < ep; ++r) {
      const int64_t b = block[size_t(r) * local + e], n_rows = block[size_t(r) * local + e + 1] - b;
      for (int64_t j = 0; j < n_rows; ++j, ++pos) {
        to_expert[size_t(pos)] = int32_t(b + j);  // expert-major row pos <- received row
        to_source[size_t(b + j)] = int32_t(pos);  // received row <- expert-major row
      }
    }
  }
  to_expert_ = Tensor::from_vector(to_expert, {rows}).to(device);
  to_source_ = Tensor::from_vector(to_source, {rows}).to(device);
}

std::vector<int64_t> ExpertDispatch::counts_times(int64_t offset, int64_t columns) const {
  std::vector<int64_t> out;
  for (int r = 0; r < group_.size(); ++r) out.push_back(table()[offset + r] * columns);
  return out;
}

std::vector<int64_t> ExpertDispatch::local_counts() const {
  return std::vector<int64_t>(table(), table() + experts_);
}

std::vector<int64_t> ExpertDispatch::expert_rows() const {
  const int32_t* t = table() + experts_ + 2 * group_.size();
  return std::vector<int64_t>(t, t + experts_ / group_.size());
}

void ExpertDispatch::dispatch(Backend& be, const Tensor& send, Tensor& experts) {
  if (group_.size() == 1) {
    experts = send;  // already grouped by expert
    return;
  }
  const int64_t c = send.dim(1), ep = group_.size();
  ensure_buffer(received_, {to_expert_.numel(), c}, send.device());
  group_.ep
      ->all_to_all_v(send, counts_times(experts_, c), received_, counts_times(experts_ + ep, c))
      ->wait();
  ensure_buffer(experts, received_.shape(), send.device());
  be.gather_rows(received_, to_expert_, Tensor(), experts);
}

void ExpertDispatch::combine(Backend& be, const Tensor& experts, Tensor& send) {
  if (group_.size() == 1) {
    send = experts;
    return;
  }
  const int64_t c = experts.dim(1), ep = group_.size();
  ensure_buffer(returned_, experts.shape(), experts.device());
  be.gather_rows(experts, to_source_, Tensor(), returned_);
  ensure_buffer(send, {send_rows(), c}, experts.device());
  group_.ep
      ->all_to_all_v(returned_, counts_times(experts_ + ep, c), send, counts_times(experts_, c))
      ->wait();
}

}  // namespace peng
