// The Backend ops' defaults: an op a backend does not implement is a clear error naming it.
#include "peng/core/backend.h"

#include <cmath>

#include "peng/core/error.h"

namespace peng {

AdamWScalars adamw_scalars(const AdamWOptions& opt) {
  const double lr = opt.lr, b1 = opt.beta1, b2 = opt.beta2;
  const double bc1 = 1.0 - std::pow(b1, double(opt.step));
  const double bc2 = 1.0 - std::pow(b2, double(opt.step));
  AdamWScalars k;
  k.decay = float(1.0 - lr * double(opt.weight_decay));
  k.w1 = float(1.0 - b1);
  k.b2 = opt.beta2;
  k.w2 = float(1.0 - b2);
  k.step_size = float(lr / bc1);
  k.bc2_sqrt = float(std::sqrt(bc2));
  k.eps = opt.eps;
  return k;
}

void Backend::missing(const char* op) const {
  throw Error(detail::concat("backend ", name(), " has no op ", op));
}

void Backend::matmul(const Tensor&, const Tensor&, Tensor&, const MatmulOptions&) {
  missing("matmul");
}
void Backend::linear_forward(const Tensor&, const Tensor&, const Tensor&, Tensor&, WeightLayout) {
  missing("linear_forward");
}
void Backend::linear_backward(const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&,
                              Tensor&, WeightLayout) {
  missing("linear_backward");
}
void Backend::layernorm_forward(const Tensor&, const Tensor&, const Tensor&, float, Tensor&,
                                Tensor&, Tensor&) {
  missing("layernorm_forward");
}
void Backend::layernorm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                 const Tensor&, Tensor&, Tensor&, Tensor&) {
  missing("layernorm_backward");
}
void Backend::gelu_forward(const Tensor&, Tensor&) { missing("gelu_forward"); }
void Backend::gelu_backward(const Tensor&, const Tensor&, Tensor&) { missing("gelu_backward"); }
void Backend::rmsnorm_forward(const Tensor&, const Tensor&, float, Tensor&, Tensor&) {
  missing("rmsnorm_forward");
}
void Backend::rmsnorm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, Tensor&,
                               Tensor&) {
  missing("rmsnorm_backward");
}
void Backend::swiglu_forward(const Tensor&, Tensor&) { missing("swiglu_forward"); }
void Backend::swiglu_backward(const Tensor&, const Tensor&, Tensor&) { missing("swiglu_backward"); }
void Backend::qk_norm_forward(const Tensor&, int, int, const Tensor&, const Tensor&, float, Tensor&,
                              Tensor&) {
  missing("qk_norm_forward");
}
void Backend::qk_norm_backward(const Tensor&, const Tensor&, int, int, const Tensor&, const Tensor&,
                               const Tensor&, Tensor&, Tensor&, Tensor&) {
  missing("qk_norm_backward");
}
void Backend::rope_forward(Tensor&, int, int, const Tensor&, const Tensor&) {
  missing("rope_forward");
}
void Backend::rope_backward(Tensor&, int, int, const Tensor&, const Tensor&) {
  missing("rope_backward");
}
void Backend::attention_forward(const Tensor&, int, int, Tensor&, Tensor&) {
  missing("attention_forward");
}
void Backend::attention_backward(const Tensor&, const Tensor&, const Tensor&, int, int, Tensor&) {
  missing("attention_backward");
}
double Backend::attention_work_fraction(int64_t) const { return 1.0; }
void Backend::embedding_forward(const Tensor&, const Tensor&, const Tensor&, Tensor&) {
  missing("embedding_forward");
}
void Backend::embedding_backward(const Tensor&, const Tensor&, Tensor&, Tensor&) {
  missing("embedding_backward");
}
void Backend::cross_entropy_forward(const Tensor&, const Tensor&, int64_t, Tensor&) {
  missing("cross_entropy_forward");
}
void Backend::cross_entropy_backward(const Tensor&, const Tensor&, int64_t, float, Tensor&) {
  missing("cross_entropy_backward");
}
void Backend::embedding_forward_shard(const Tensor&, const Tensor&, int64_t, const Tensor&,
                                      Tensor&) {
  missing("embedding_forward_shard");
}
void Backend::embedding_backward_shard(const Tensor&, const Tensor&, int64_t, Tensor&, Tensor&) {
  missing("embedding_backward_shard");
}
void Backend::cross_entropy_shard_max(const Tensor&, int64_t, Tensor&) {
  missing("cross_entropy_shard_max");
}
void Backend::cross_entropy_shard_sums(const Tensor&, const Tensor&, int64_t, int64_t,
                                       const Tensor&, Tensor&) {
  missing("cross_entropy_shard_sums");
}
void Backend::cross_entropy_shard_backward(const Tensor&, const Tensor&, int64_t, int64_t,
                                           const Tensor&, const Tensor&, float, Tensor&) {
  missing("cross_entropy_shard_backward");
}
void Backend::add(const Tensor&, const Tensor&, Tensor&) { missing("add"); }
void Backend::scale(Tensor&, float) { missing("scale"); }
void Backend::cast(const Tensor&, Tensor&) { missing("cast"); }
void Backend::moe_route(const Tensor&, const Tensor&, const MoeRouting&, Tensor&, Tensor&, Tensor&,
                        Tensor&) {
  missing("moe_route");
}
void Backend::moe_route_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                 const MoeRouting&, Tensor&) {
  missing("moe_route_backward");
}
void Backend::gather_rows(const Tensor&, const Tensor&, const Tensor&, Tensor&) {
  missing("gather_rows");
}
void Backend::scatter_add_rows(const Tensor&, const Tensor&, const Tensor&, Tensor&) {
  missing("scatter_add_rows");
}
void Backend::rows_dot(const Tensor&, const Tensor&, Tensor&) { missing("rows_dot"); }
void Backend::adamw_update(Tensor&, const Tensor&, Tensor&, Tensor&, const AdamWOptions&) {
  missing("adamw_update");
}
double Backend::sum_squares(const Tensor&) { missing("sum_squares"); }
void Backend::sum_squares_into(const Tensor&, Tensor&) { missing("sum_squares_into"); }
void Backend::sum_into(const Tensor&, Tensor&) { missing("sum_into"); }

}  // namespace peng
