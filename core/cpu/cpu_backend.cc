// CpuBackend: the shared instance and the argument checks used by every op file.
// The ops themselves live one family per file (see cpu_backend.h).
#include "core/cpu/cpu_backend.h"

namespace peng {

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

namespace cpu {

void check_tensor(const char* op, const char* name, const Tensor& t, DType dtype) {
  PENG_CHECK(t.defined(), op, ": ", name, " is undefined");
  PENG_CHECK(t.device().is_cpu(), op, ": ", name, " must be on cpu, got ", t.str());
  PENG_CHECK(t.dtype() == dtype, op, ": ", name, " must be ", dtype_name(dtype), ", got ", t.str());
}

void check_shape(const char* op, const char* name, const Tensor& t, const Shape& shape,
                 DType dtype) {
  check_tensor(op, name, t, dtype);
  PENG_CHECK(t.shape() == shape, op, ": ", name, " must have shape ", shape_str(shape), ", got ",
             t.str());
}

void check_no_overlap(const char* op, const char* out_name, const Tensor& out, const char* in_name,
                      const Tensor& in) {
  auto o = static_cast<const char*>(out.raw_data());
  auto i = static_cast<const char*>(in.raw_data());
  bool overlap = o < i + in.nbytes() && i < o + out.nbytes();
  PENG_CHECK(!overlap || out.nbytes() == 0 || in.nbytes() == 0, op, ": ", out_name,
             " must not share memory with ", in_name);
}

int64_t rows_of(const Tensor& t) {
  int64_t cols = t.dim(-1);
  return cols == 0 ? 0 : t.numel() / cols;
}

}  // namespace cpu
}  // namespace peng
