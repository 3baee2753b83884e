// Tensor: a typed, shaped, contiguous (row-major) view of device memory.
//
// Storage is reference-counted and shared by views. Every tensor is contiguous:
// views are reshapes (`view`) or ranges of the first dimension (`slice`), so
// `data<T>()` always points at numel() consecutive elements.
// Ownership: copying a Tensor copies the handle, not the data (use `clone`).
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "peng/core/dtype.h"
#include "peng/core/error.h"

namespace peng {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[4, 16, 64]"
int64_t shape_numel(const Shape& s);

// 16-bit floating point element types (storage only; compute in f32).
struct bf16_t {
  uint16_t bits;
};
struct f16_t {
  uint16_t bits;
};

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::kF32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::kF64;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::kI32;
}
template <>
constexpr DType dtype_of<uint16_t>() {
  return DType::kU16;
}
template <>
constexpr DType dtype_of<bf16_t>() {
  return DType::kBF16;
}
template <>
constexpr DType dtype_of<f16_t>() {
  return DType::kF16;
}

// A block of device memory. Freed by the device's allocator when the last view dies.
class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
};

// A typed, shaped, contiguous (row-major) view of host or device memory (see the top of this
// file): cheap to copy, sharing its storage.
class Tensor {
 public:
  Tensor() = default;  // undefined tensor
  static Tensor empty(const Shape& shape, DType dtype = DType::kF32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::kF32, Device device = Device::cpu());
  template <typename T>
  static Tensor from_vector(const std::vector<T>& v, const Shape& shape) {
    Tensor t = empty(shape, dtype_of<T>());
    PENG_CHECK(int64_t(v.size()) == t.numel(), "from_vector: ", v.size(), " values for shape ",
               shape_str(shape));
    std::copy(v.begin(), v.end(), t.data<T>());
    return t;
  }

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return int(shape_.size()); }
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return size_t(numel_) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const;
  std::string str() const;  // "f32[4, 16] cpu"

  void* raw_data() const;
  // The storage this tensor views (shared by every view of it; null when undefined) and its
  // size: for counting memory once however many views hold it.
  const void* storage_id() const { return storage_.get(); }
  size_t storage_bytes() const { return storage_ ? storage_->nbytes() : 0; }
  template <typename T>
  T* data() const {
    PENG_CHECK(dtype_of<std::remove_const_t<T>>() == dtype_, "tensor ", str(), " accessed as ",
               dtype_name(dtype_of<std::remove_const_t<T>>()));
    return static_cast<T*>(raw_data());
  }

  // Same elements, another shape (one entry may be -1). Shares storage.
  Tensor view(const Shape& shape) const;
  // Rows [begin, end) of the first dimension. Shares storage.
  Tensor slice(int64_t begin, int64_t end) const;
  // Flat elements [begin, begin + shape.numel) viewed with `shape`. Shares storage.
  Tensor flat_view(int64_t begin, const Shape& shape) const;

  Tensor clone() const;                // deep copy, same device
  Tensor to(Device device) const;      // deep copy onto another device
  Tensor to_dtype(DType dtype) const;  // CPU conversion between float types (and i32/u16)
  void copy_from(const Tensor& src);   // same shape and dtype, any devices
  void zero();

 private:
  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // in elements
  Shape shape_;
  int64_t numel_ = 0;
  DType dtype_ = DType::kF32;
};

// Memory counted once however many views hold it: the bytes of the storage `t` views when
// `seen` has not counted it yet (and records it), else 0; 0 for an undefined tensor.
inline int64_t count_storage(const Tensor& t, std::set<const void*>& seen) {
  return t.defined() && seen.insert(t.storage_id()).second ? int64_t(t.storage_bytes()) : 0;
}

// Raw byte copy between devices (either side may be CPU or CUDA).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);

}  // namespace peng
