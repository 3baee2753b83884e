// Mixture-of-Experts ops on the CPU: the router's scores and top-k choice with their
// backward, and the row moves that carry tokens to their experts and back.
//
// Layouts: logits, scores, dlogits (N, E) row-major; chosen, weights, dweights (N, k); bias,
// aux (E); prob_sums (E) f64. Rows are independent: the router ops give each OpenMP thread
// a block of rows and work in double inside a row (E is small: 8 .. 256). prob_sums adds
// the rows in order on one thread, so it is deterministic.
// Selection: k passes over the row, each taking the largest selection score not yet taken
// (strictly larger wins, so ties go to the lower expert index).
// Backward, per row with s = scores, S = sum_e s_e, chosen c_1..c_k:
//   weights w_j = s_cj (/ Z, Z = sum_j s_cj with norm_topk):
//     ds_cj += dw_j (/ Z - sum_i dw_i s_ci / Z^2 with norm_topk)
//   balance term through s' = s / S:  ds_e += aux_e / S - sum_f aux_f s_f / S^2
//   softmax: dlogit = s * (ds - sum_e ds_e s_e);  sigmoid: dlogit = ds * s (1 - s)
// gather_rows / scatter_add_rows / rows_dot are row copies with a weight; scatter_add_rows
// walks its source rows in order and splits the columns over threads, so every output row
// sums its contributions in source order whatever the thread count.
#include <vector>

#include "peng/core/cpu/cpu_backend.h"

namespace peng {

namespace {

struct RouteDims {
  int64_t n, e;
};

RouteDims check_route(const char* op, const Tensor& scores, const Tensor& chosen,
                      const MoeRouting& r) {
  cpu::check_tensor(op, "scores", scores);
  PENG_CHECK(scores.ndim() == 2 && scores.dim(1) >= 1, op, ": scores must be (N, E), got ",
             scores.str());
  const int64_t n = scores.dim(0), e = scores.dim(1);
  PENG_CHECK(r.topk >= 1 && r.topk <= e, op, ": topk ", r.topk, " for ", e, " experts");
  cpu::check_shape(op, "chosen", chosen, {n, r.topk}, DType::kI32);
  return {n, e};
}

// A row move between `rows` (N, C) and `moved` (M, C) by index (M) i32 in [0, N), with an
// optional weight (M): checks every argument (the first index outside [0, N) is named).
struct RowMove {
  int64_t m, cols;
  const int32_t* index;
  const float* weight;  // null: 1
};
RowMove check_row_move(const char* op, const char* rows_name, const Tensor& rows,
                       const char* moved_name, const Tensor& moved, const Tensor& index,
                       const Tensor& weight) {
  cpu::check_tensor(op, rows_name, rows);
  PENG_CHECK(rows.ndim() == 2, op, ": ", rows_name, " must be (N, C), got ", rows.str());
  cpu::check_tensor(op, "index", index, DType::kI32);
  PENG_CHECK(index.ndim() == 1, op, ": index must be (M), got ", index.str());
  const int64_t m = index.numel();
  const int32_t* ix = index.data<const int32_t>();
  for (int64_t i = 0; i < m; ++i) {
    PENG_CHECK(ix[i] >= 0 && ix[i] < rows.dim(0), op, ": index[", i, "] = ", ix[i],
               " is outside [0, ", rows.dim(0), ")");
  }
  if (weight.defined()) cpu::check_shape(op, "weight", weight, {m});
  cpu::check_shape(op, moved_name, moved, {m, rows.dim(1)});
  cpu::check_no_overlap(op, moved_name, moved, rows_name, rows);
  return {m, rows.dim(1), ix, weight.defined() ? weight.data<const float>() : nullptr};
}

}  // namespace

void CpuBackend::moe_route(const Tensor& logits, const Tensor& bias, const MoeRouting& r,
                           Tensor& scores, Tensor& chosen, Tensor& weights, Tensor& prob_sums) {
  const char* op = "moe_route";
  const auto [n, e] = check_route(op, logits, chosen, r);
  const int k = r.topk;
  cpu::check_shape(op, "bias", bias, {e});
  cpu::check_shape(op, "scores", scores, {n, e});
  cpu::check_shape(op, "weights", weights, {n, k});
  cpu::check_shape(op, "prob_sums", prob_sums, {e}, DType::kF64);
  const float* l = logits.data<const float>();
  const float* b = bias.data<const float>();
  float* s = scores.data<float>();
  int32_t* c = chosen.data<int32_t>();
  float* w = weights.data<float>();
#pragma omp parallel for schedule(static) if (n * e >= cpu::kParallelMin)
  for (int64_t t = 0; t < n; ++t) {
    const float* lt = l + t * e;
    float* st = s + t * e;
    if (r.sigmoid) {
      for (int64_t j = 0; j < e; ++j) st[j] = float(1.0 / (1.0 + std::exp(-double(lt[j]))));
    } else {
      double mx = lt[0], sum = 0;
      for (int64_t j = 1; j < e; ++j) mx = std::max(mx, double(lt[j]));
      for (int64_t j = 0; j < e; ++j) sum += std::exp(double(lt[j]) - mx);
      for (int64_t j = 0; j < e; ++j) st[j] = float(std::exp(double(lt[j]) - mx) / sum);
    }
    std::vector<char> taken(size_t(e), 0);
    double z = 0;
    for (int j = 0; j < k; ++j) {
      int64_t best = -1;
      float best_sel = 0;
      for (int64_t x = 0; x < e; ++x) {
        const float sel = st[x] + b[x];
        if (!taken[size_t(x)] && (best < 0 || sel > best_sel)) best = x, best_sel = sel;
      }
      taken[size_t(best)] = 1;
      c[t * k + j] = int32_t(best);
      z += st[best];
    }
    for (int j = 0; j < k; ++j) {
      const float sc = st[c[t * k + j]];
      w[t * k + j] = r.norm_topk ? float(double(sc) / z) : sc;
    }
  }
  double* p = prob_sums.data<double>();
  std::fill(p, p + e, 0.0);
  for (int64_t t = 0; t < n; ++t) {
    const float* st = s + t * e;
    double sum = 0;
    for (int64_t j = 0; j < e; ++j) sum += st[j];
    for (int64_t j = 0; j < e; ++j) p[j] += double(st[j]) / sum;
  }
}

void CpuBackend::moe_route_backward(const Tensor& dweights, const Tensor& scores,
                                    const Tensor& chosen, const Tensor& aux, const MoeRouting& r,
                                    Tensor& dlogits) {
  const char* op = "moe_route_backward";
  const auto [n, e] = check_route(op, scores, chosen, r);
  const int k = r.topk;
  cpu::check_shape(op, "dweights", dweights, {n, k});
  cpu::check_shape(op, "aux", aux, {e});
  cpu::check_shape(op, "dlogits", dlogits, {n, e});
  const float* dw = dweights.data<const float>();
  const float* s = scores.data<const float>();
  const int32_t* c = chosen.data<const int32_t>();
  const float* a = aux.data<const float>();
  float* dl = dlogits.data<float>();
#pragma omp parallel for schedule(static) if (n * e >= cpu::kParallelMin)
  for (int64_t t = 0; t < n; ++t) {
    const float* st = s + t * e;
    const int32_t* ct = c + t * k;
    const float* dwt = dw + t * k;
    std::vector<double> ds(size_t(e), 0.0);
    double z = 0, dot = 0;
    for (int j = 0; j < k; ++j) z += st[ct[j]], dot += double(dwt[j]) * st[ct[j]];
    for (int j = 0; j < k; ++j) {
      ds[size_t(ct[j])] += r.norm_topk ? double(dwt[j]) / z - dot / (z * z) : double(dwt[j]);
    }
    double sum = 0, aux_dot = 0;
    for (int64_t x = 0; x < e; ++x) sum += st[x], aux_dot += double(a[x]) * st[x];
    for (int64_t x = 0; x < e; ++x) ds[size_t(x)] += double(a[x]) / sum - aux_dot / (sum * sum);
    float* dlt = dl + t * e;
    if (r.sigmoid) {
      for (int64_t x = 0; x < e; ++x) dlt[x] = float(ds[size_t(x)] * st[x] * (1.0 - st[x]));
    } else {
      double m = 0;
      for (int64_t x = 0; x < e; ++x) m += ds[size_t(x)] * st[x];
      for (int64_t x = 0; x < e; ++x) dlt[x] = float(double(st[x]) * (ds[size_t(x)] - m));
    }
  }
}

void CpuBackend::gather_rows(const Tensor& x, const Tensor& index, const Tensor& weight,
                             Tensor& out) {
  const auto [m, cols, ix, w] = check_row_move("gather_rows", "x", x, "out", out, index, weight);
  const float* px = x.data<const float>();
  float* po = out.data<float>();
#pragma omp parallel for schedule(static) if (m * cols >= cpu::kParallelMin)
  for (int64_t i = 0; i < m; ++i) {
    const float* src = px + int64_t(ix[i]) * cols;
    float* dst = po + i * cols;
    const float wi = w ? w[i] : 1.0f;
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) dst[j] = wi * src[j];
  }
}

void CpuBackend::scatter_add_rows(const Tensor& src, const Tensor& index, const Tensor& weight,
                                  Tensor& out) {
  const auto [m, cols, ix, w] =
      check_row_move("scatter_add_rows", "out", out, "src", src, index, weight);
  const float* ps = src.data<const float>();
  float* po = out.data<float>();
#pragma omp parallel for schedule(static) if (m * cols >= cpu::kParallelMin)
  for (int64_t j = 0; j < cols; ++j) {
    for (int64_t i = 0; i < m; ++i) {
      po[int64_t(ix[i]) * cols + j] += (w ? w[i] : 1.0f) * ps[i * cols + j];
    }
  }
}

void CpuBackend::rows_dot(const Tensor& a, const Tensor& b, Tensor& out) {
  const char* op = "rows_dot";
  cpu::check_tensor(op, "a", a);
  PENG_CHECK(a.ndim() == 2, op, ": a must be (M, C), got ", a.str());
  cpu::check_shape(op, "b", b, a.shape());
  cpu::check_shape(op, "out", out, {a.dim(0)});
  const int64_t m = a.dim(0), cols = a.dim(1);
  const float* pa = a.data<const float>();
  const float* pb = b.data<const float>();
  float* po = out.data<float>();
#pragma omp parallel for schedule(static) if (m * cols >= cpu::kParallelMin)
  for (int64_t i = 0; i < m; ++i) {
    double acc = 0;
    for (int64_t j = 0; j < cols; ++j) acc += double(pa[i * cols + j]) * pb[i * cols + j];
    po[i] = float(acc);
  }
}

}  // namespace peng
