#include "peng/core/op_checks.h"

#include <climits>

#include "peng/core/error.h"

namespace peng::checks {

void check_tensor(Device device, const char* op, const char* name, const Tensor& t, DType dtype) {
  PENG_CHECK(t.defined(), op, ": ", name, " is undefined");
  PENG_CHECK(t.device() == device, op, ": ", name, " must be on ", device.str(), ", got ", t.str());
  PENG_CHECK(t.dtype() == dtype, op, ": ", name, " must be ", dtype_name(dtype), ", got ", t.str());
}

void check_shape(Device device, const char* op, const char* name, const Tensor& t,
                 const Shape& shape, DType dtype) {
  check_tensor(device, op, name, t, dtype);
  PENG_CHECK(t.shape() == shape, op, ": ", name, " must have shape ", shape_str(shape), ", got ",
             t.str());
}

void check_no_overlap(const char* op, const char* out_name, const Tensor& out, const char* in_name,
                      const Tensor& in) {
  auto o = static_cast<const char*>(out.raw_data());
  auto i = static_cast<const char*>(in.raw_data());
  const bool overlap = o < i + in.nbytes() && i < o + out.nbytes();
  PENG_CHECK(!overlap || out.nbytes() == 0 || in.nbytes() == 0, op, ": ", out_name,
             " must not share memory with ", in_name);
}

int64_t rows_of(const Tensor& t) {
  const int64_t cols = t.ndim() ? t.dim(-1) : 0;
  return cols == 0 ? 0 : t.numel() / cols;
}

QkvDims check_qkv(Device device, const char* op, const Tensor& qkv, int n_head, int n_kv_head) {
  check_tensor(device, op, "qkv", qkv);
  PENG_CHECK(n_head >= 1 && n_kv_head >= 1 && n_head % n_kv_head == 0, op, ": n_head ", n_head,
             " must be a positive multiple of n_kv_head ", n_kv_head);
  const int64_t groups = int64_t(n_head) + 2 * int64_t(n_kv_head);
  PENG_CHECK(qkv.ndim() == 3 && qkv.dim(2) % groups == 0, op,
             ": qkv must be (B, T, (H + 2K) * hd) with H + 2K = ", groups, ", got ", qkv.str());
  return {qkv.dim(0), qkv.dim(1), n_head, n_kv_head, qkv.dim(2) / groups};
}

namespace {
RowDims check_rows(Device device, const char* op, const Tensor& x) {
  check_tensor(device, op, "x", x);
  PENG_CHECK(x.ndim() >= 1, op, ": x must be (N, C), got ", x.str());
  PENG_CHECK(x.dim(-1) > 0, op, ": x has no channels: ", x.str());
  return {rows_of(x), x.dim(-1)};
}
void check_row_stats(Device device, const char* op, const char* name, const Tensor& t,
                     const Tensor& x, int64_t n) {
  check_tensor(device, op, name, t);
  PENG_CHECK(t.numel() == n, op, ": ", name, " must hold ", n, " rows for x ", x.str(), ", got ",
             t.str());
}
}  // namespace

RowDims check_rmsnorm(Device device, const char* op, const Tensor& x, const Tensor& w,
                      const Tensor& rstd) {
  const RowDims d = check_rows(device, op, x);
  check_shape(device, op, "w", w, {d.c});
  check_row_stats(device, op, "rstd", rstd, x, d.n);
  return d;
}

RowDims check_layernorm(Device device, const char* op, const Tensor& x, const Tensor& w,
                        const Tensor& mean, const Tensor& rstd) {
  const RowDims d = check_rows(device, op, x);
  check_shape(device, op, "w", w, {d.c});
  check_row_stats(device, op, "mean", mean, x, d.n);
  check_row_stats(device, op, "rstd", rstd, x, d.n);
  return d;
}

int64_t check_rope(Device device, const char* op, const char* x_name, const Tensor& x, int n_heads,
                   int n_rot, const Tensor& cos, const Tensor& sin) {
  check_tensor(device, op, x_name, x);
  PENG_CHECK(x.ndim() == 3, op, ": ", x_name, " must be (B, T, n_heads * hd), got ", x.str());
  PENG_CHECK(n_heads >= 1 && x.dim(2) % n_heads == 0 && (x.dim(2) / n_heads) % 2 == 0, op,
             ": n_heads ", n_heads, " must divide the last dimension of ", x_name, " ", x.str(),
             " into heads of an even size");
  PENG_CHECK(n_rot >= 0 && n_rot <= n_heads, op, ": n_rot ", n_rot, " must be in [0, n_heads ",
             n_heads, "]");
  const int64_t T = x.dim(1), hd = x.dim(2) / n_heads, half = hd / 2;
  check_tensor(device, op, "cos", cos);
  check_tensor(device, op, "sin", sin);
  PENG_CHECK(cos.ndim() == 2 && cos.dim(0) >= T && cos.dim(1) == half, op,
             ": cos must be (Tmax >= ", T, ", hd/2 = ", half, "), got ", cos.str());
  PENG_CHECK(sin.shape() == cos.shape(), op, ": sin must have cos's shape ", cos.str(), ", got ",
             sin.str());
  check_no_overlap(op, x_name, x, "cos", cos);
  check_no_overlap(op, x_name, x, "sin", sin);
  return hd;
}

QkvDims check_qk_norm(Device device, const char* op, const Tensor& qkv, int n_head, int n_kv_head,
                      const Tensor& wq, const Tensor& wk, const Tensor& rstd) {
  const QkvDims d = check_qkv(device, op, qkv, n_head, n_kv_head);
  PENG_CHECK(d.hd > 0, op, ": qkv has no head channels: ", qkv.str());
  check_shape(device, op, "wq", wq, {d.hd});
  check_shape(device, op, "wk", wk, {d.hd});
  check_tensor(device, op, "rstd", rstd);
  PENG_CHECK(rstd.numel() == d.b * d.t * (d.h + d.k), op, ": rstd must be (B*T, H + K) = (",
             d.b * d.t, ", ", d.h + d.k, ") for qkv ", qkv.str(), ", got ", rstd.str());
  return d;
}

// ---- matmul and linear ----

namespace {

constexpr int64_t kBlasMax = INT_MAX;

void check_blas_dim(const char* op, int64_t d) {
  PENG_CHECK(d <= kBlasMax, op, ": dimension ", d, " exceeds the BLAS int range");
}

const char* trans_mark(bool t) { return t ? " (T)" : ""; }

LinearDims check_linear(Device device, const char* op, const Tensor& x, const Tensor& w,
                        WeightLayout layout) {
  check_tensor(device, op, "x", x);
  check_tensor(device, op, "w", w);
  PENG_CHECK(layout == WeightLayout::kInOut || layout == WeightLayout::kOutIn, op,
             ": unknown weight layout ", int(layout));
  PENG_CHECK(x.ndim() >= 2, op, ": x must be (N, Cin), got ", x.str());
  const bool out_in = layout == WeightLayout::kOutIn;
  PENG_CHECK(w.ndim() == 2 && w.dim(out_in ? 1 : 0) == x.dim(-1), op, ": w must be ",
             out_in ? "(Cout, Cin)" : "(Cin, Cout)", " with Cin = ", x.dim(-1), " (layout ",
             out_in ? "kOutIn" : "kInOut", "), got ", w.str(), " for x ", x.str());
  const int64_t cin = x.dim(-1), cout = w.dim(out_in ? 0 : 1);
  Shape ys = x.shape();
  ys.back() = cout;
  return {rows_of(x), cin, cout, ys};
}

}  // namespace

MatmulDims check_matmul(Device device, const Tensor& a, const Tensor& b, const Tensor& out,
                        const MatmulOptions& opt) {
  const char* op = "matmul";
  check_tensor(device, op, "a", a);
  check_tensor(device, op, "b", b);
  check_tensor(device, op, "out", out);
  const int nd = a.ndim();
  PENG_CHECK((nd == 2 || nd == 3) && b.ndim() == nd && out.ndim() == nd, op,
             ": a, b, out must all be 2-D or all 3-D, got a ", a.str(), ", b ", b.str(), ", out ",
             out.str());
  MatmulDims d;
  d.batch = nd == 3 ? a.dim(0) : 1;
  PENG_CHECK(nd == 2 || (b.dim(0) == d.batch && out.dim(0) == d.batch), op,
             ": batch dimensions differ: a ", a.str(), ", b ", b.str(), ", out ", out.str());
  d.ar = a.dim(-2);
  d.ac = a.dim(-1);
  d.br = b.dim(-2);
  d.bc = b.dim(-1);
  d.m = opt.trans_a ? d.ac : d.ar;
  d.k = opt.trans_a ? d.ar : d.ac;
  const int64_t kb = opt.trans_b ? d.bc : d.br;
  d.n = opt.trans_b ? d.br : d.bc;
  PENG_CHECK(d.k == kb, op, ": inner dimensions differ: a ", a.str(), trans_mark(opt.trans_a),
             " @ b ", b.str(), trans_mark(opt.trans_b));
  PENG_CHECK(out.dim(-2) == d.m && out.dim(-1) == d.n, op, ": out ", out.str(), " must be [", d.m,
             ", ", d.n, "] for a ", a.str(), trans_mark(opt.trans_a), " @ b ", b.str(),
             trans_mark(opt.trans_b));
  for (int64_t v : {d.m, d.n, d.k}) check_blas_dim(op, v);
  check_no_overlap(op, "out", out, "a", a);
  check_no_overlap(op, "out", out, "b", b);
  return d;
}

LinearDims check_linear_forward(Device device, const Tensor& x, const Tensor& w, const Tensor& bias,
                                const Tensor& y, WeightLayout layout) {
  const char* op = "linear_forward";
  LinearDims d = check_linear(device, op, x, w, layout);
  check_shape(device, op, "y", y, d.y_shape);
  if (bias.defined()) check_shape(device, op, "bias", bias, {d.cout});
  for (int64_t v : {d.n, d.cin, d.cout}) check_blas_dim(op, v);
  check_no_overlap(op, "y", y, "x", x);
  check_no_overlap(op, "y", y, "w", w);
  if (bias.defined()) check_no_overlap(op, "y", y, "bias", bias);
  return d;
}

LinearDims check_linear_backward(Device device, const Tensor& dy, const Tensor& x, const Tensor& w,
                                 const Tensor& dx, const Tensor& dw, const Tensor& dbias,
                                 WeightLayout layout) {
  const char* op = "linear_backward";
  LinearDims d = check_linear(device, op, x, w, layout);
  check_shape(device, op, "dy", dy, d.y_shape);
  check_shape(device, op, "dw", dw, w.shape());
  if (dx.defined()) {
    check_shape(device, op, "dx", dx, x.shape());
    check_no_overlap(op, "dx", dx, "dy", dy);
    check_no_overlap(op, "dx", dx, "x", x);  // x is read after dx is written
    check_no_overlap(op, "dx", dx, "w", w);
  }
  if (dbias.defined()) check_shape(device, op, "dbias", dbias, {d.cout});
  for (int64_t v : {d.n, d.cin, d.cout}) check_blas_dim(op, v);
  check_no_overlap(op, "dw", dw, "dy", dy);
  check_no_overlap(op, "dw", dw, "x", x);
  return d;
}

// ---- optimizer ----

void check_adamw(Device device, const Tensor& param, const Tensor& grad, const Tensor& m,
                 const Tensor& v, const AdamWOptions& opt) {
  const char* op = "adamw_update";
  check_tensor(device, op, "param", param);
  check_tensor(device, op, "grad", grad);
  check_tensor(device, op, "m", m);
  check_tensor(device, op, "v", v);
  PENG_CHECK(
      grad.numel() == param.numel() && m.numel() == param.numel() && v.numel() == param.numel(), op,
      ": param ", param.str(), ", grad ", grad.str(), ", m ", m.str(), ", v ", v.str(),
      " must have the same number of elements");
  PENG_CHECK(opt.step >= 1, op, ": step must be >= 1 (1-based), got ", opt.step);
  check_no_overlap(op, "param", param, "grad", grad);
  check_no_overlap(op, "m", m, "v", v);
  check_no_overlap(op, "param", param, "m", m);
  check_no_overlap(op, "param", param, "v", v);
  check_no_overlap(op, "m", m, "grad", grad);
  check_no_overlap(op, "v", v, "grad", grad);
}

}  // namespace peng::checks
