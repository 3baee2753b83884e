#include "peng/launch/pipeline_runner.h"

#include <algorithm>
#include <chrono>
#include <set>

namespace peng {

PipelineRunner::PipelineRunner(CausalLM& model, Communicator& pp, Schedule schedule,
                               int micro_batches, Shape activation)
    : model_(model),
      pp_(pp),
      rank_(pp.rank()),
      pp_size_(pp.size()),
      v_(model.pipeline().virtual_stages),
      micro_batches_(micro_batches),
      activation_(std::move(activation)),
      schedule_(std::move(schedule)) {
  PENG_CHECK(int(schedule_.size()) == pp_size_, "PipelineRunner: a schedule for ", schedule_.size(),
             " ranks on a pipeline of ", pp_size_);
}

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}
}  // namespace

const Tensor& PipelineRunner::forward(int micro, int chunk, const MicroBatch& batch,
                                      const LossOut& loss, const Timing& timing) {
  auto [tokens, targets] = batch(micro);
  Tensor input;
  if (stage(chunk) > 0) {
    // With pp == 1 the previous stage is this rank's chunk - 1: its output, kept.
    input = pp_size_ == 1 ? act_out_.at({micro, chunk - 1}) : act_in_.at({micro, chunk});
  }
  lap(timing, timing.other_s);
  const Tensor& out = model_.forward_chunk(chunk, *tokens, input, *targets, loss);
  lap(timing, timing.forward_s);
  return out;
}

int64_t PipelineRunner::stash_bytes() const {
  std::set<const void*> seen;
  int64_t bytes = 0;
  for (const auto& [key, tensors] : stash_) {
    for (const Tensor& t : tensors) bytes += count_storage(t, seen);
  }
  return bytes;
}

double PipelineRunner::train(const MicroBatch& batch, float grad_scale, Tensor* loss_sum_out,
                             const Timing& timing) {
  double loss_sum = 0, waiting = 0;
  const auto start = Clock::now();
  for (const Action& a : schedule_[size_t(rank_)]) {
    const Key key{a.micro, a.chunk};
    switch (a.op) {
      case Action::kRecvActivation:
      case Action::kRecvGrad: {
        Tensor t = Tensor::empty(activation_, DType::kF32, device());
        const auto w0 = Clock::now();
        pp_.recv(t, a.peer, p2p_tag(a, rank_, pp_size_, v_))->wait();
        waiting += seconds_since(w0);
        (a.op == Action::kRecvActivation ? act_in_ : grad_in_)[key] = t;
        break;
      }
      case Action::kSendActivation:
      case Action::kSendGrad: {
        const Tensor& t = (a.op == Action::kSendActivation ? act_out_ : grad_out_).at(key);
        sends_[{key, a.op}] = pp_.send(t, a.peer, p2p_tag(a, rank_, pp_size_, v_));
        break;
      }
      case Action::kForward: {
        double loss = 0;
        const Tensor& out =
            forward(a.micro, a.chunk, batch,
                    loss_sum_out ? LossOut::sum_into(*loss_sum_out) : &loss, timing);
        if (last_stage(a.chunk)) {
          loss_sum += loss;
        } else {
          act_out_[key] = out.clone();
        }
        stash_[key] = model_.stash_activations(a.chunk);
        peak_stash_bytes_ = std::max(peak_stash_bytes_, stash_bytes());
        break;
      }
      case Action::kBackward: {
        model_.restore_activations(a.chunk, std::move(stash_.at(key)));
        stash_.erase(key);
        Tensor dout;
        if (!last_stage(a.chunk)) {
          dout = pp_size_ == 1 ? grad_out_.at({a.micro, a.chunk + 1}) : grad_in_.at(key);
        }
        lap(timing, timing.other_s);
        const Tensor& dx = model_.backward_chunk(a.chunk, dout, grad_scale);
        lap(timing, timing.backward_s);
        // This stage's output for the micro-batch is no longer needed: its gradient came
        // back, so the next stage has received it (pp == 1: the next chunk consumed it).
        if (auto it = sends_.find({key, Action::kSendActivation}); it != sends_.end()) {
          it->second->wait();  // complete: the peer received it
          sends_.erase(it);
        }
        act_out_.erase(key);
        if (pp_size_ == 1) grad_out_.erase({a.micro, a.chunk + 1});
        if (stage(a.chunk) > 0) grad_out_[key] = dx.clone();
        act_in_.erase(key);
        grad_in_.erase(key);
        break;
      }
    }
  }
  const auto w0 = Clock::now();
  for (auto& [what, work] : sends_) work->wait();
  waiting += seconds_since(w0);
  bubble_ = waiting / std::max(seconds_since(start), 1e-9);
  sends_.clear();
  stash_.clear();
  act_in_.clear();
  act_out_.clear();
  grad_in_.clear();
  grad_out_.clear();
  return loss_sum;
}

double PipelineRunner::evaluate(const MicroBatch& batch, Tensor* loss_sum_out) {
  // A wavefront: each rank takes micro-batches and its chunks in order, receiving each
  // input from the previous stage and sending each output on; deadlock-free because every
  // rank meets the stages in the same order.
  double loss_sum = 0;
  const int stages = pp_size_ * v_;
  for (int m = 0; m < micro_batches_; ++m) {
    for (int c = 0; c < v_; ++c) {
      const int s = stage(c);
      if (s > 0 && pp_size_ > 1) {
        Tensor t = Tensor::empty(activation_, DType::kF32, device());
        pp_.recv(t, rank_of_stage(s - 1, pp_size_), s - 1)->wait();
        act_in_[{m, c}] = t;
      }
      double loss = 0;
      const Tensor& out =
          forward(m, c, batch, loss_sum_out ? LossOut::sum_into(*loss_sum_out) : &loss, {});
      if (s == stages - 1) {
        loss_sum += loss;
      } else {
        act_out_[{m, c}] = out.clone();
        if (pp_size_ > 1) pp_.send(act_out_[{m, c}], rank_of_stage(s + 1, pp_size_), s)->wait();
      }
      act_in_.erase({m, c});
    }
  }
  act_out_.clear();
  return loss_sum;
}

Tensor PipelineRunner::last_logits(const Tensor& tokens) {
  const int64_t len = tokens.dim(1);
  const Shape shape{model_.boundary_rows(len), model_.arch().n_embd};
  const int stages = pp_size_ * v_;
  // On the device: pp is a tensor communicator.
  Tensor row = Tensor::empty({model_.padded_vocab()}, DType::kF32, device()), previous;
  for (int c = 0; c < v_; ++c) {  // the evaluate() wavefront, one sequence
    const int s = stage(c);
    Tensor input = previous;
    if (s > 0 && pp_size_ > 1) {
      input = Tensor::empty(shape, DType::kF32, device());
      pp_.recv(input, rank_of_stage(s - 1, pp_size_), s - 1)->wait();
    }
    const Tensor& out = model_.forward_chunk(c, tokens, input, Tensor(), nullptr);
    if (s == stages - 1) {
      row.copy_from(model_.logits_row(len - 1));
    } else {
      previous = out.clone();
      if (pp_size_ > 1) pp_.send(previous, rank_of_stage(s + 1, pp_size_), s)->wait();
    }
  }
  if (pp_size_ > 1) pp_.broadcast(row, rank_of_stage(stages - 1, pp_size_))->wait();
  return row.to(Device::cpu());
}

}  // namespace peng
