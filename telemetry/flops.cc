#include "telemetry/flops.h"

namespace peng {

double model_flops_per_token(const FlopsShape& s) {
  return 6.0 * double(s.params) + 12.0 * double(s.n_layer) * double(s.n_embd) * double(s.seq_len);
}

}  // namespace peng
