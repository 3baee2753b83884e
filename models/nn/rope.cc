#include "peng/models/nn/rope.h"

#include <cmath>

namespace peng {

std::vector<double> rope_inv_freq(const RopeConfig& rope, int64_t head_dim) {
  std::vector<double> inv(size_t(head_dim / 2));
  for (size_t i = 0; i < inv.size(); ++i) {
    inv[i] = 1.0 / std::pow(rope.theta, double(2 * i) / double(head_dim));
  }
  if (rope.scaling != "llama3") return inv;
  const double old_len = double(rope.original_max_position);
  const double low_wavelen = old_len / rope.low_freq_factor;
  const double high_wavelen = old_len / rope.high_freq_factor;
  for (double& f : inv) {
    const double wavelen = 2 * M_PI / f;
    if (wavelen < high_wavelen) continue;  // high frequencies: unchanged
    if (wavelen > low_wavelen) {           // low frequencies: interpolated by `factor`
      f /= rope.factor;
      continue;
    }
    const double smooth =
        (old_len / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor);
    f = (1 - smooth) * f / rope.factor + smooth * f;
  }
  return inv;
}

RopeTables::RopeTables(const RopeConfig& rope, int64_t head_dim, Device device)
    : inv_freq_(rope_inv_freq(rope, head_dim)), device_(device) {}

void RopeTables::ensure(int64_t seq_len) {
  if (cos_.defined() && cos_.dim(0) >= seq_len) return;
  const int64_t half = int64_t(inv_freq_.size());
  Tensor c = Tensor::empty({seq_len, half}), s = Tensor::empty({seq_len, half});
  for (int64_t t = 0; t < seq_len; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle = double(t) * inv_freq_[size_t(i)];
      c.data<float>()[t * half + i] = float(std::cos(angle));
      s.data<float>()[t * half + i] = float(std::sin(angle));
    }
  }
  cos_ = c.to(device_);
  sin_ = s.to(device_);
}

}  // namespace peng
