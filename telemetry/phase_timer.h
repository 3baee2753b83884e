// PhaseTimer: where one step's time goes, phase after phase, measured on the device that
// does the work.
//
//   timer.start();                 // the first mark
//   ...queue the data reads...     timer.lap(&t.data_s);
//   ...queue the forward pass...   timer.lap(&t.forward_s);
//   timer.collect();               // every lap's seconds added into its slot
//
// A lap is the time from the previous mark to this one, added to `*slot` (nullptr: dropped).
// On the CPU the marks are host clock readings and the slots are filled at once. On a GPU
// the host only queues work, so its clock says nothing about the GPU: each mark is a CUDA
// event recorded on the device's stream, and a lap is the GPU's time between two events
// (the work queued in the phase, plus any time the GPU waited for the host to queue it).
// collect() then waits for the last event and fills the slots: read them only after it.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "peng/core/dtype.h"

namespace peng {

namespace cuda {
class Event;
}

class PhaseTimer {
 public:
  explicit PhaseTimer(Device device);
  ~PhaseTimer();
  PhaseTimer(const PhaseTimer&) = delete;
  PhaseTimer& operator=(const PhaseTimer&) = delete;

  // Begins a new round of laps (forgets laps not collected).
  void start();
  // Ends the phase that ran since the previous mark; its seconds go to *slot.
  void lap(double* slot);
  // Fills every slot of the laps since start() (GPU: waits for the last mark first).
  void collect();
  bool on_gpu() const { return device_.is_cuda(); }

 private:
  using Clock = std::chrono::steady_clock;
  Device device_;
  Clock::time_point last_;
  // GPU: events[i] is mark i (reused from round to round); slots_[i] gets the time between
  // marks i and i + 1.
  std::vector<std::unique_ptr<cuda::Event>> events_;
  std::vector<double*> slots_;
  void mark(size_t i);
};

}  // namespace peng
