// CpuBackend: the shared instance. The ops themselves live one family per file (see
// cpu_backend.h); their argument checks are core/op_checks.h's.
#include "peng/core/cpu/cpu_backend.h"

namespace peng {

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

}  // namespace peng
