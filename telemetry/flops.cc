#include "peng/telemetry/flops.h"

namespace peng {

namespace {
double attention_flops(const FlopsShape& s) {
  return 12.0 * double(s.n_layer) * double(s.n_embd) * double(s.seq_len);
}
}  // namespace

double model_flops_per_token(const FlopsShape& s) {
  return 6.0 * double(s.params) + attention_flops(s);
}

double causal_model_flops_per_token(const FlopsShape& s) {
  return 6.0 * double(s.params) + 0.5 * attention_flops(s);
}

double hardware_flops_per_token(const FlopsShape& s) {
  return 6.0 * double(s.params) + attention_flops(s) * s.attention_fraction +
         s.recompute_flops_per_token;
}

double utilisation(double flops_per_token, double tokens, double seconds, int devices,
                   double peak_flops) {
  if (seconds <= 0 || devices <= 0 || peak_flops <= 0) return 0;
  return flops_per_token * tokens / seconds / double(devices) / peak_flops;
}

}  // namespace peng
