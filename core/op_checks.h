// Argument checks shared by the backends' ops (core/cpu, core/cuda/ops): each tensor defined,
// on the backend's device (the `device` argument), with the dtype and shape the op documents
// (core/backend.h). Same conditions and messages on every backend; failures throw
// peng::Error naming the op and the tensor. Plain C++17: the CUDA op files include it.
#pragma once

#include <cstdint>

#include "peng/core/backend.h"

namespace peng::checks {

// `t` is defined, on `device`, of dtype `dtype`.
void check_tensor(Device device, const char* op, const char* name, const Tensor& t,
                  DType dtype = DType::kF32);
// check_tensor plus an exact shape.
void check_shape(Device device, const char* op, const char* name, const Tensor& t,
                 const Shape& shape, DType dtype = DType::kF32);
// `out` must not share memory with `in` (for outputs that are written before `in` is read).
void check_no_overlap(const char* op, const char* out_name, const Tensor& out, const char* in_name,
                      const Tensor& in);
// Rows of a tensor viewed as (N, C) with C its last dimension (all leading dimensions
// flattened); 0 when C is 0 or t has no dimension.
int64_t rows_of(const Tensor& t);

// ---- norms over the last dimension ----

// x (N, C) with all leading dimensions flattened.
struct RowDims {
  int64_t n, c;
};
// x (N, C >= 1), w (C) and rstd (N values): rmsnorm_*'s common arguments.
RowDims check_rmsnorm(Device device, const char* op, const Tensor& x, const Tensor& w,
                      const Tensor& rstd);
// x (N, C >= 1), w (C), mean and rstd (N values): layernorm_*'s common arguments.
RowDims check_layernorm(Device device, const char* op, const Tensor& x, const Tensor& w,
                        const Tensor& mean, const Tensor& rstd);

// The dimensions of a fused grouped-query qkv (B, T, (H + 2K) * hd) (core/backend.h).
struct QkvDims {
  int64_t b, t, h, k, hd;
  int64_t width() const { return (h + 2 * k) * hd; }  // qkv's last dimension
};
// Checks qkv (f32, 3-D) and the head counts: n_head >= 1, n_kv_head >= 1 dividing n_head, and
// H + 2K dividing qkv's last dimension.
QkvDims check_qkv(Device device, const char* op, const Tensor& qkv, int n_head, int n_kv_head);
// check_qkv of qk_norm_*: also hd > 0, wq, wk (hd) and rstd (B*T*(H + K) values).
QkvDims check_qk_norm(Device device, const char* op, const Tensor& qkv, int n_head, int n_kv_head,
                      const Tensor& wq, const Tensor& wk, const Tensor& rstd);

// x (B, T, n_heads * hd) with an even hd, n_rot in [0, n_heads], cos and sin (Tmax >= T, hd/2)
// apart from x: rope_forward/backward's arguments. Returns hd.
int64_t check_rope(Device device, const char* op, const char* x_name, const Tensor& x, int n_heads,
                   int n_rot, const Tensor& cos, const Tensor& sin);

// ---- matmul and linear (core/backend.h), dimensions within the BLAS int range ----

struct MatmulDims {
  int64_t batch, m, n, k;  // out (batch,) m x n = op(a) m x k @ op(b) k x n
  int64_t ar, ac, br, bc;  // stored shapes: a (ar, ac), b (br, bc)
};
MatmulDims check_matmul(Device device, const Tensor& a, const Tensor& b, const Tensor& out,
                        const MatmulOptions& opt);

// x (N, Cin) and w ((Cin, Cout) for kInOut, (Cout, Cin) for kOutIn) of a linear op: N, Cin,
// Cout and the shape of y (x's leading dimensions with Cout last).
struct LinearDims {
  int64_t n, cin, cout;
  Shape y_shape;
};
LinearDims check_linear_forward(Device device, const Tensor& x, const Tensor& w, const Tensor& bias,
                                const Tensor& y, WeightLayout layout);
LinearDims check_linear_backward(Device device, const Tensor& dy, const Tensor& x, const Tensor& w,
                                 const Tensor& dx, const Tensor& dw, const Tensor& dbias,
                                 WeightLayout layout);

// ---- optimizer ----

// param, grad, m, v f32 with one element count, pairwise disjoint; opt.step >= 1.
void check_adamw(Device device, const Tensor& param, const Tensor& grad, const Tensor& m,
                 const Tensor& v, const AdamWOptions& opt);

}  // namespace peng::checks
