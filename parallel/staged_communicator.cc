// StagedCommunicator (contract in staged_communicator.h): each device tensor gets a host
// stand-in; the wrapped communicator works on the stand-ins; wait() copies results back.
#include "peng/parallel/staged_communicator.h"

#include <exception>

#include "peng/core/error.h"

namespace peng {

namespace {

// The host tensor standing in for `t`: `t` itself when it is on the host, else a host buffer
// of its shape (holding a copy of `t` when `fill`).
Tensor host_stand_in(const Tensor& t, bool fill) {
  PENG_CHECK(t.defined(), "communication on an undefined tensor");
  if (t.device().is_cpu()) return t;
  return fill ? t.to(Device::cpu()) : Tensor::empty(t.shape(), t.dtype(), Device::cpu());
}

class StagedWork : public Work {
 public:
  // `result` (when defined and not on the host) receives `result_host` after the host op.
  // `keep` holds any other host buffer the host op uses.
  StagedWork(std::unique_ptr<Work> inner, Tensor result, Tensor result_host, Tensor keep = {})
      : inner_(std::move(inner)),
        result_(std::move(result)),
        result_host_(std::move(result_host)),
        keep_(std::move(keep)) {}

  ~StagedWork() override {
    if (done_) return;
    try {
      inner_->wait();  // the host op may still use the buffers freed with this object
    } catch (const std::exception&) {
      // Destructors do not throw; an error of a dropped Work is lost, as with MPI's.
    }
  }

  void wait() override {
    if (done_) return;
    done_ = true;
    inner_->wait();
    if (result_.defined() && !result_.device().is_cpu()) result_.copy_from(result_host_);
  }

 private:
  std::unique_ptr<Work> inner_;
  Tensor result_, result_host_, keep_;
  bool done_ = false;
};

}  // namespace

StagedCommunicator::StagedCommunicator(std::unique_ptr<Communicator> host)
    : host_(std::move(host)) {
  PENG_CHECK(host_ != nullptr, "StagedCommunicator needs a host communicator");
}

std::unique_ptr<Communicator> StagedCommunicator::split(int color, int key,
                                                        const std::string& name) {
  return std::make_unique<StagedCommunicator>(host_->split(color, key, name));
}

std::unique_ptr<Work> StagedCommunicator::all_reduce(Tensor& t, ReduceOp op) {
  Tensor h = host_stand_in(t, true);
  auto inner = host_->all_reduce(h, op);
  return std::make_unique<StagedWork>(std::move(inner), t, h);
}

std::unique_ptr<Work> StagedCommunicator::reduce_scatter(const Tensor& in, Tensor& out,
                                                         ReduceOp op) {
  Tensor in_h = host_stand_in(in, true);
  Tensor out_h = host_stand_in(out, false);
  auto inner = host_->reduce_scatter(in_h, out_h, op);
  return std::make_unique<StagedWork>(std::move(inner), out, out_h, in_h);
}

std::unique_ptr<Work> StagedCommunicator::all_gather(const Tensor& in, Tensor& out) {
  Tensor in_h = host_stand_in(in, true);
  Tensor out_h = host_stand_in(out, false);
  auto inner = host_->all_gather(in_h, out_h);
  return std::make_unique<StagedWork>(std::move(inner), out, out_h, in_h);
}

std::unique_ptr<Work> StagedCommunicator::all_to_all_v(const Tensor& in,
                                                       const std::vector<int64_t>& send_counts,
                                                       Tensor& out,
                                                       const std::vector<int64_t>& recv_counts) {
  Tensor in_h = host_stand_in(in, true);
  Tensor out_h = host_stand_in(out, false);
  auto inner = host_->all_to_all_v(in_h, send_counts, out_h, recv_counts);
  return std::make_unique<StagedWork>(std::move(inner), out, out_h, in_h);
}

std::unique_ptr<Work> StagedCommunicator::broadcast(Tensor& t, int root) {
  Tensor h = host_stand_in(t, /*fill=*/rank() == root);
  auto inner = host_->broadcast(h, root);
  return std::make_unique<StagedWork>(std::move(inner), t, h);
}

std::unique_ptr<Work> StagedCommunicator::send(const Tensor& t, int dst, int tag) {
  Tensor h = host_stand_in(t, true);
  auto inner = host_->send(h, dst, tag);
  return std::make_unique<StagedWork>(std::move(inner), Tensor(), Tensor(), h);
}

std::unique_ptr<Work> StagedCommunicator::recv(Tensor& t, int src, int tag) {
  Tensor h = host_stand_in(t, false);
  auto inner = host_->recv(h, src, tag);
  return std::make_unique<StagedWork>(std::move(inner), t, h);
}

}  // namespace peng
