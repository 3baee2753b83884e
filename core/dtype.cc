#include "peng/core/dtype.h"

#include <cstring>

#include "peng/core/error.h"

namespace peng {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::kF32:
      return 4;
    case DType::kBF16:
      return 2;
    case DType::kF16:
      return 2;
    case DType::kI32:
      return 4;
    case DType::kU16:
      return 2;
    case DType::kF64:
      return 8;
  }
  throw Error("dtype_size: unknown dtype");
}

DType parse_dtype(const std::string& name) {
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16, DType::kI32, DType::kU16, DType::kF64}) {
    if (name == dtype_name(t)) return t;
  }
  throw InputError("unknown dtype '" + name + "' (f32, bf16, f16, i32, u16, f64)");
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kF32:
      return "f32";
    case DType::kBF16:
      return "bf16";
    case DType::kF16:
      return "f16";
    case DType::kI32:
      return "i32";
    case DType::kU16:
      return "u16";
    case DType::kF64:
      return "f64";
  }
  return "?";
}

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index);
}

}  // namespace peng
