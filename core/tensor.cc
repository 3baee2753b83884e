#include "peng/core/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "peng/core/cuda/memory.h"

namespace peng {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    PENG_CHECK(d >= 0, "negative dimension in shape ", shape_str(s));
    n *= d;
  }
  return n;
}

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.is_cpu()) {
    // 64-byte alignment for SIMD; aligned_alloc needs a multiple of the alignment.
    size_t n = std::max<size_t>(64, (nbytes + 63) / 64 * 64);
    data_ = std::aligned_alloc(64, n);
    if (!data_) throw Error(detail::concat("out of host memory allocating ", nbytes, " bytes"));
  } else {
    data_ = cuda::allocate(nbytes, device.index);
  }
}

Storage::~Storage() {
  if (device_.is_cpu()) {
    std::free(data_);
  } else {
    cuda::deallocate(data_, device_.index);
  }
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.numel_ = shape_numel(shape);
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(t.nbytes(), device);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero();
  return t;
}

int64_t Tensor::dim(int i) const {
  int n = ndim();
  int j = i < 0 ? i + n : i;
  PENG_CHECK(j >= 0 && j < n, "dim ", i, " out of range for tensor ", str());
  return shape_[j];
}

Device Tensor::device() const { return storage_ ? storage_->device() : Device::cpu(); }

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  return std::string(dtype_name(dtype_)) + shape_str(shape_) + " " + device().str();
}

void* Tensor::raw_data() const {
  PENG_CHECK(defined(), "access to an undefined tensor");
  return static_cast<char*>(storage_->data()) + offset_ * int64_t(dtype_size(dtype_));
}

Tensor Tensor::view(const Shape& shape) const {
  Shape s = shape;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      PENG_CHECK(infer < 0, "view: more than one -1 in ", shape_str(shape));
      infer = int(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    PENG_CHECK(known > 0 && numel_ % known == 0, "view: cannot infer ", shape_str(shape), " from ",
               str());
    s[infer] = numel_ / known;
  }
  PENG_CHECK(shape_numel(s) == numel_, "view: ", shape_str(shape), " does not match ", str());
  Tensor t = *this;
  t.shape_ = s;
  return t;
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  PENG_CHECK(ndim() >= 1 && 0 <= begin && begin <= end && end <= shape_[0], "slice [", begin, ", ",
             end, ") out of range for ", str());
  Shape s = shape_;
  int64_t row = s[0] ? numel_ / s[0] : 0;
  s[0] = end - begin;
  return flat_view(begin * row, s);
}

Tensor Tensor::flat_view(int64_t begin, const Shape& shape) const {
  int64_t n = shape_numel(shape);
  PENG_CHECK(begin >= 0 && begin + n <= numel_, "flat_view [", begin, ", ", begin + n,
             ") out of range for ", str());
  Tensor t = *this;
  t.offset_ = offset_ + begin;
  t.shape_ = shape;
  t.numel_ = n;
  return t;
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, nbytes);
  } else if (dst_device.is_cuda() && src_device.is_cpu()) {
    cuda::copy(dst, src, nbytes, cuda::CopyKind::kHostToDevice, dst_device.index);
  } else if (dst_device.is_cpu() && src_device.is_cuda()) {
    cuda::copy(dst, src, nbytes, cuda::CopyKind::kDeviceToHost, src_device.index);
  } else {
    cuda::copy(dst, src, nbytes, cuda::CopyKind::kDeviceToDevice, dst_device.index);
  }
}

Tensor Tensor::clone() const { return to(device()); }

Tensor Tensor::to(Device device) const {
  Tensor t = empty(shape_, dtype_, device);
  t.copy_from(*this);
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  PENG_CHECK(src.shape_ == shape_ && src.dtype_ == dtype_, "copy_from: ", src.str(), " into ",
             str());
  copy_bytes(raw_data(), device(), src.raw_data(), src.device(), nbytes());
}

void Tensor::zero() {
  if (device().is_cpu()) {
    std::memset(raw_data(), 0, nbytes());
  } else {
    cuda::memset_zero(raw_data(), nbytes(), device().index);
  }
}

namespace {
double load_as_double(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::kF32:
      return t.data<float>()[i];
    case DType::kF64:
      return t.data<double>()[i];
    case DType::kBF16:
      return bf16_to_f32(t.data<bf16_t>()[i].bits);
    case DType::kF16:
      return f16_to_f32(t.data<f16_t>()[i].bits);
    case DType::kI32:
      return t.data<int32_t>()[i];
    case DType::kU16:
      return t.data<uint16_t>()[i];
  }
  return 0;
}
void store_from_double(const Tensor& t, int64_t i, double v) {
  switch (t.dtype()) {
    case DType::kF32:
      t.data<float>()[i] = float(v);
      break;
    case DType::kF64:
      t.data<double>()[i] = v;
      break;
    case DType::kBF16:
      t.data<bf16_t>()[i].bits = f32_to_bf16(float(v));
      break;
    case DType::kF16:
      t.data<f16_t>()[i].bits = f32_to_f16(float(v));
      break;
    case DType::kI32:
      t.data<int32_t>()[i] = int32_t(v);
      break;
    case DType::kU16:
      t.data<uint16_t>()[i] = uint16_t(v);
      break;
  }
}
}  // namespace

Tensor Tensor::to_dtype(DType dtype) const {
  PENG_CHECK(device().is_cpu(), "to_dtype: only CPU tensors, got ", str());
  Tensor out = empty(shape_, dtype);
  if (dtype == dtype_) {
    out.copy_from(*this);
    return out;
  }
  // bf16/f16 -> f32 and f32 -> bf16/f16 go through float, which is exact for the former.
  for (int64_t i = 0; i < numel_; ++i) store_from_double(out, i, load_as_double(*this, i));
  return out;
}

}  // namespace peng
