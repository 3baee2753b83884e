// Element types and devices.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace peng {

enum class DType : uint8_t { kF32, kBF16, kF16, kI32, kU16, kF64 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // "f32", "bf16", ...

// bf16 / f16 <-> f32 conversions (round to nearest even; NaN stays NaN).
uint16_t f32_to_bf16(float x);
float bf16_to_f32(uint16_t x);
uint16_t f32_to_f16(float x);
float f16_to_f32(uint16_t x);

enum class DeviceType : uint8_t { kCpu, kCuda };

struct Device {
  DeviceType type = DeviceType::kCpu;
  int index = 0;

  static Device cpu() { return {DeviceType::kCpu, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::kCuda, index}; }
  bool is_cpu() const { return type == DeviceType::kCpu; }
  bool is_cuda() const { return type == DeviceType::kCuda; }
  bool operator==(const Device&) const = default;
  std::string str() const;  // "cpu", "cuda:0"
};

}  // namespace peng
