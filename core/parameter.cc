#include "core/parameter.h"

namespace peng {

int ParameterSet::add(const std::string& name, const Shape& shape) {
  PENG_CHECK(!values_.defined(), "ParameterSet::add(", name, ") after finalize()");
  PENG_CHECK(!index_.count(name), "duplicate parameter ", name);
  Parameter p;
  p.name = name;
  p.global_shape = shape;
  p.offset = numel_;
  p.weight_decay = shape.size() >= 2;
  numel_ += shape_numel(shape);
  index_[name] = int(params_.size());
  params_.push_back(std::move(p));
  return int(params_.size()) - 1;
}

void ParameterSet::finalize() {
  PENG_CHECK(!values_.defined(), "ParameterSet::finalize() called twice");
  values_ = Tensor::zeros({numel_}, DType::kF32, device_);
  grads_ = Tensor::zeros({numel_}, DType::kF32, device_);
  for (Parameter& p : params_) {
    p.value = values_.flat_view(p.offset, p.global_shape);
    p.grad = grads_.flat_view(p.offset, p.global_shape);
  }
}

Parameter& ParameterSet::get(const std::string& name) {
  auto it = index_.find(name);
  PENG_CHECK(it != index_.end(), "no parameter named ", name);
  return params_[size_t(it->second)];
}

const Parameter& ParameterSet::get(const std::string& name) const {
  return const_cast<ParameterSet*>(this)->get(name);
}

}  // namespace peng
