#include "peng/telemetry/phase_timer.h"

#include "peng/core/cuda/memory.h"

namespace peng {

PhaseTimer::PhaseTimer(Device device) : device_(device), last_(Clock::now()) {}

PhaseTimer::~PhaseTimer() = default;

void PhaseTimer::mark(size_t i) {
  if (events_.size() <= i) events_.push_back(std::make_unique<cuda::Event>(device_.index));
  events_[i]->record();
}

void PhaseTimer::start() {
  slots_.clear();
  if (on_gpu()) {
    mark(0);
  } else {
    last_ = Clock::now();
  }
}

void PhaseTimer::lap(double* slot) {
  if (on_gpu()) {
    slots_.push_back(slot);
    mark(slots_.size());
    return;
  }
  const Clock::time_point now = Clock::now();
  if (slot) *slot += std::chrono::duration<double>(now - last_).count();
  last_ = now;
}

void PhaseTimer::collect() {
  if (!on_gpu() || slots_.empty()) return;
  events_[slots_.size()]->synchronize();
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i]) *slots_[i] += cuda::elapsed_seconds(*events_[i], *events_[i + 1]);
  }
  slots_.clear();
}

}  // namespace peng
