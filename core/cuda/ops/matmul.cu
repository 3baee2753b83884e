// CudaBackend::matmul and linear_forward/backward (both weight layouts): every product is one
// cublasLtMatmul on the device's stream; the bias gradient is an own kernel
// (kernels/matmul.cuh).
//
// Row-major tensors on a column-major library. A row-major (R, S) array X (ld S) read
// column-major with ld S is the (S, R) matrix X^T. peng asks for the row-major
// C (M, N) = op_a(A) op_b(B); transposed, C^T = op_b(B)^T op_a(A)^T, and every factor of that
// is a column-major view of memory we already have:
//   C^T (N, M)          = c's memory, column-major, ld N;
//   op_b(B)^T           = b's memory read column-major (the (bc, br) matrix B^T), transposed
//                         by cuBLASLt iff trans_b ((B^T)^T = B when B was to be transposed);
//   op_a(A)^T           = a's memory read column-major (A^T, (ac, ar)), transposed iff trans_a.
// So one cuBLASLt call with its A := b (rows bc, cols br, ld bc, op trans_b), its B := a
// (rows ac, cols ar, ld ac, op trans_a), D := c (rows N, cols M, ld N) and m = N, n = M,
// k = K computes the row-major product with no copies. A row vector bias (N) broadcast over
// the M rows of C is, column-major, a vector over the N rows of D broadcast over its
// columns: exactly CUBLASLT_EPILOGUE_BIAS (bias length = D's rows).
//
// Exact fp32: compute type CUBLAS_COMPUTE_32F (never CUBLAS_COMPUTE_32F_FAST_TF32 or an
// emulated 32F type), so there is no TF32 rounding of the inputs and no BF16x9 emulation;
// scale type f32, alpha/beta host scalars. Deterministic: the same algorithm for a shape
// every time (cached below), a workspace owned by the backend and one stream, under which
// cuBLAS documents bit-wise reproducible results; the bias gradient is a fixed-order
// column reduction (no atomics), not CUBLASLT_EPILOGUE_BGRAD*, which cuBLASLt does not
// document as deterministic (and which overwrites rather than accumulates).
// Plans: per device, a 32 MiB workspace (allocated once, lives with the process like the
// backend) and a map from the problem (shape, transposes, batch strides, epilogue, pointer
// alignments) to its descriptors and the algorithm cuBLASLt's heuristic chose the first time.
// Should the heuristic offer nothing with the bias epilogue, y is filled with the bias rows and
// the product added with beta = 1 instead (the CPU backend's way).
//
// linear (x (N, Cin), y (N, Cout)):
//   kInOut  w (Cin, Cout):  y = x w + b,    dx = dy w^T,  dw (Cin, Cout) += x^T dy
//   kOutIn  w (Cout, Cin):  y = x w^T + b,  dx = dy w,    dw (Cout, Cin) += dy^T x
//   dbias (Cout) += column sums of dy.
#include <cublasLt.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <unordered_map>

#include "peng/core/cuda/kernels/matmul.cuh"
#include "peng/core/cuda/launch.cuh"
#include "peng/core/cuda/memory.h"
#include "peng/core/cuda/ops/checks.h"

namespace peng::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;

using Describe = std::function<std::string()>;  // "a [...], b [...], out [...]" for errors

void check_lt(cublasStatus_t s, const char* call, const char* op, const Describe& what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    throw Error(detail::concat(op, ": cuBLASLt ", call, " failed: ", cublasLtGetStatusName(s), " (",
                               cublasLtGetStatusString(s), ") for ", what()));
  }
}

// The alignment of a device pointer in bytes, capped at 256 (the heuristic's default).
uint32_t alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 1 && a % al) al /= 2;
  return al;
}

// One product in cuBLASLt's column-major terms (after the swap in the file comment):
// D (m, n) = alpha op(A) (m, k) op(B) (k, n) + beta C [+ bias (m)], `batch` times.
struct Problem {
  bool trans_a, trans_b;
  int64_t m, n, k, lda, ldb, ldc;
  int64_t batch, stride_a, stride_b, stride_c;
  bool bias;
  uint32_t align_a, align_b, align_c, align_bias;

  using Key = std::array<int64_t, 17>;
  Key key() const {
    return {trans_a,  trans_b,  m,        n,    k,       lda,     ldb,     ldc,       batch,
            stride_a, stride_b, stride_c, bias, align_a, align_b, align_c, align_bias};
  }
};

struct KeyHash {
  size_t operator()(const Problem::Key& k) const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the fields
    for (int64_t v : k) {
      h ^= uint64_t(v);
      h *= 1099511628211ull;
    }
    return size_t(h);
  }
};

// The descriptors of a Problem and the algorithm chosen for it (found: false when the
// heuristic has none, remembered so it is asked once).
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool found = false;
  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

// A device's workspace and plans; created on first use, never destroyed (like the backend,
// it lives as long as the process).
struct LtState {
  std::mutex mu;
  void* workspace = nullptr;
  std::unordered_map<Problem::Key, std::unique_ptr<Plan>, KeyHash> plans;
};

LtState& lt_state(int device) {
  static std::mutex mu;
  static std::unordered_map<int, LtState*> states;
  std::lock_guard<std::mutex> lock(mu);
  LtState*& s = states[device];
  if (!s) {
    auto fresh = std::make_unique<LtState>();
    fresh->workspace = allocate(kWorkspaceBytes, device);
    s = fresh.release();
  }
  return *s;
}

cublasLtMatrixLayout_t make_layout(uint64_t rows, uint64_t cols, int64_t ld, int64_t batch,
                                   int64_t stride, const char* op, const Describe& what) {
  cublasLtMatrixLayout_t l = nullptr;
  check_lt(cublasLtMatrixLayoutCreate(&l, CUDA_R_32F, rows, cols, ld), "MatrixLayoutCreate", op,
           what);
  if (batch > 1) {
    const int32_t count = int32_t(batch);
    cublasStatus_t s = cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                        &count, sizeof count);
    if (s == CUBLAS_STATUS_SUCCESS) {
      s = cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                           sizeof stride);
    }
    if (s != CUBLAS_STATUS_SUCCESS) cublasLtMatrixLayoutDestroy(l);
    check_lt(s, "MatrixLayoutSetAttribute", op, what);
  }
  return l;
}

// Descriptors and the heuristic's first choice for `p` (bias: the pointer the heuristic
// reads the alignment of; set again on every call).
std::unique_ptr<Plan> make_plan(cublasLtHandle_t handle, const Problem& p, const void* bias,
                                const char* op, const Describe& what) {
  auto plan = std::make_unique<Plan>();
  check_lt(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
           "MatmulDescCreate", op, what);
  const cublasOperation_t ta = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t tb = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  check_lt(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta),
           "MatmulDescSetAttribute(TRANSA)", op, what);
  check_lt(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb),
           "MatmulDescSetAttribute(TRANSB)", op, what);
  if (p.bias) {
    const uint32_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t bias_type = CUDA_R_32F;
    check_lt(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                            sizeof epilogue),
             "MatmulDescSetAttribute(EPILOGUE)", op, what);
    check_lt(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                            &bias_type, sizeof bias_type),
             "MatmulDescSetAttribute(BIAS_DATA_TYPE)", op, what);
    check_lt(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                            sizeof bias),
             "MatmulDescSetAttribute(BIAS_POINTER)", op, what);
  }
  // Stored (before op) shapes: A (m, k) or (k, m) if transposed; B (k, n) or (n, k).
  plan->a = make_layout(p.trans_a ? p.k : p.m, p.trans_a ? p.m : p.k, p.lda, p.batch, p.stride_a,
                        op, what);
  plan->b = make_layout(p.trans_b ? p.n : p.k, p.trans_b ? p.k : p.n, p.ldb, p.batch, p.stride_b,
                        op, what);
  plan->c = make_layout(p.m, p.n, p.ldc, p.batch, p.stride_c, op, what);

  cublasLtMatmulPreference_t pref = nullptr;
  check_lt(cublasLtMatmulPreferenceCreate(&pref), "MatmulPreferenceCreate", op, what);
  std::unique_ptr<std::remove_pointer_t<cublasLtMatmulPreference_t>,
                  cublasStatus_t (*)(cublasLtMatmulPreference_t)>
      pref_owner(pref, cublasLtMatmulPreferenceDestroy);
  const uint64_t ws = kWorkspaceBytes;
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, p.align_a},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, p.align_b},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, p.align_c},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, p.align_c}};
  check_lt(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                sizeof ws),
           "MatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)", op, what);
  for (const auto& [attr, value] : aligns) {
    check_lt(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof value),
             "MatmulPreferenceSetAttribute(MIN_ALIGNMENT)", op, what);
  }
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  check_lt(cublasLtMatmulAlgoGetHeuristic(handle, plan->desc, plan->a, plan->b, plan->c, plan->c,
                                          pref, 1, &result, &found),
           "MatmulAlgoGetHeuristic", op, what);
  plan->found = found > 0 && result.state == CUBLAS_STATUS_SUCCESS;
  if (plan->found) plan->algo = result.algo;
  return plan;
}

// The row-major product of the file comment:
//   c (M, N) = alpha op_a(a) op_b(b) + beta c   [+ bias (N) on every row, beta = 0]
// a stored (ar, ac) = op_a's (M, K) or (K, M), b (br, bc) = (K, N) or (N, K), all contiguous;
// `batch` products with element strides sa, sb, sc between them.
struct RowMajorGemm {
  const float* a;
  const float* b;
  float* c;
  const float* bias = nullptr;
  bool trans_a = false, trans_b = false;
  int64_t M = 0, N = 0, K = 0;
  float alpha = 1.0f, beta = 0.0f;
  int64_t batch = 1, sa = 0, sb = 0, sc = 0;
};

void gemm(const CudaBackend& be, const RowMajorGemm& g, const char* op, const Describe& what) {
  if (g.M == 0 || g.N == 0 || g.batch == 0) return;
  CudaLaunch launch(be.index());  // makes the device current; the stream
  if (g.K == 0) {  // op_a(a) op_b(b) is all zeros: c = bias, or beta c (beta 0 overwrites NaNs)
    if (g.bias) {
      kernels::fill_rows(launch, g.c, g.batch * g.M, g.N, g.bias, 0.0f);
    } else if (g.beta != 1.0f) {
      kernels::fill_rows(launch, g.c, g.batch * g.M, g.N, static_cast<const float*>(nullptr),
                         g.beta);
    }
    return;
  }
  // The swap: cuBLASLt's A is b, its B is a, D is c^T; m = N, n = M.
  const int64_t ac = g.trans_a ? g.M : g.K, bc = g.trans_b ? g.K : g.N;
  LtState& st = lt_state(be.index());
  const auto handle = static_cast<cublasLtHandle_t>(be.lt_handle());
  // cuBLASLt's batch count is an int32: more products go in chunks.
  for (int64_t done = 0; done < g.batch;) {
    const int64_t count = std::min<int64_t>(g.batch - done, INT32_MAX);
    const float* pa = g.a + done * g.sa;
    const float* pb = g.b + done * g.sb;
    float* pc = g.c + done * g.sc;
    Problem p;
    p.trans_a = g.trans_b;
    p.trans_b = g.trans_a;
    p.m = g.N;
    p.n = g.M;
    p.k = g.K;
    p.lda = bc;
    p.ldb = ac;
    p.ldc = g.N;
    p.batch = count;
    p.stride_a = g.sb;
    p.stride_b = g.sa;
    p.stride_c = g.sc;
    p.bias = g.bias != nullptr;
    p.align_a = alignment(pb);
    p.align_b = alignment(pa);
    p.align_c = alignment(pc);
    p.align_bias = g.bias ? alignment(g.bias) : 0;

    std::unique_lock<std::mutex> lock(st.mu);  // the plan's bias pointer is set per call
    std::unique_ptr<Plan>& plan = st.plans[p.key()];
    if (!plan) plan = make_plan(handle, p, g.bias, op, what);
    if (!plan->found) {
      PENG_CHECK(g.bias && g.batch == 1, op, ": cuBLASLt has no algorithm for ", what());
      // No algorithm with the bias epilogue (an unaligned bias, say): the CPU backend's way,
      // c filled with the bias rows, then the plain product added with beta = 1.
      lock.unlock();
      kernels::fill_rows(launch, g.c, g.M, g.N, g.bias, 0.0f);
      RowMajorGemm plain = g;
      plain.bias = nullptr;
      plain.beta = 1.0f;
      return gemm(be, plain, op, what);
    }
    if (g.bias) {
      check_lt(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                              &g.bias, sizeof g.bias),
               "MatmulDescSetAttribute(BIAS_POINTER)", op, what);
    }
    check_lt(
        cublasLtMatmul(handle, plan->desc, &g.alpha, pb, plan->a, pa, plan->b, &g.beta, pc, plan->c,
                       pc, plan->c, &plan->algo, st.workspace, kWorkspaceBytes, launch.stream()),
        "Matmul", op, what);
    done += count;
  }
}

std::string trans_mark(bool t) { return t ? " (T)" : ""; }

}  // namespace

// ---- matmul ----

void CudaBackend::matmul(const Tensor& a, const Tensor& b, Tensor& out, const MatmulOptions& opt) {
  const char* op = "matmul";
  const checks::MatmulDims d = checks::check_matmul(device(), a, b, out, opt);

  RowMajorGemm g{a.data<const float>(), b.data<const float>(), out.data<float>()};
  g.trans_a = opt.trans_a;
  g.trans_b = opt.trans_b;
  g.M = d.m;
  g.N = d.n;
  g.K = d.k;
  g.alpha = opt.alpha;
  g.beta = opt.beta;
  g.batch = d.batch;
  g.sa = d.ar * d.ac;
  g.sb = d.br * d.bc;
  g.sc = d.m * d.n;
  gemm(*this, g, op, [&] {
    return detail::concat("a ", a.str(), trans_mark(opt.trans_a), " @ b ", b.str(),
                          trans_mark(opt.trans_b), " -> out ", out.str());
  });
}

// ---- linear ----

void CudaBackend::linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y,
                                 WeightLayout layout) {
  const char* op = "linear_forward";
  const checks::LinearDims d = checks::check_linear_forward(device(), x, w, bias, y, layout);

  // y (N, Cout) = x (N, Cin) @ w (Cin, Cout) [kInOut] or x @ w^T, w stored (Cout, Cin)
  // [kOutIn]; + bias through the epilogue.
  RowMajorGemm g{x.data<const float>(), w.data<const float>(), y.data<float>()};
  g.bias = bias.defined() ? bias.data<const float>() : nullptr;
  g.trans_b = layout == WeightLayout::kOutIn;
  g.M = d.n;
  g.N = d.cout;
  g.K = d.cin;
  gemm(*this, g, op, [&] {
    return detail::concat("x ", x.str(), ", w ", w.str(), trans_mark(g.trans_b), ", bias ",
                          bias.defined() ? bias.str() : std::string("none"), " -> y ", y.str());
  });
}

void CudaBackend::linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor& dx,
                                  Tensor& dw, Tensor& dbias, WeightLayout layout) {
  const char* op = "linear_backward";
  const checks::LinearDims d =
      checks::check_linear_backward(device(), dy, x, w, dx, dw, dbias, layout);
  const bool out_in = layout == WeightLayout::kOutIn;

  const Describe what = [&] {
    return detail::concat("dy ", dy.str(), ", x ", x.str(), ", w ", w.str(),
                          out_in ? " (kOutIn)" : " (kInOut)");
  };
  const float* pdy = dy.data<const float>();
  const float* px = x.data<const float>();
  const float* pw = w.data<const float>();
  if (dx.defined()) {
    // dx (N, Cin) = dy (N, Cout) @ w^T [kInOut, w (Cin, Cout)] or dy @ w [kOutIn, (Cout, Cin)]
    RowMajorGemm g{pdy, pw, dx.data<float>()};
    g.trans_b = !out_in;
    g.M = d.n;
    g.N = d.cin;
    g.K = d.cout;
    gemm(*this, g, op, what);
  }
  // dw += x^T (Cin, N) @ dy (N, Cout) [kInOut] or dy^T (Cout, N) @ x (N, Cin) [kOutIn]
  RowMajorGemm g{out_in ? pdy : px, out_in ? px : pdy, dw.data<float>()};
  g.trans_a = true;
  g.M = out_in ? d.cout : d.cin;
  g.N = out_in ? d.cin : d.cout;
  g.K = d.n;
  g.beta = 1.0f;
  gemm(*this, g, op, what);
  if (dbias.defined()) {  // dbias (Cout) += column sums of dy (N, Cout), fixed order
    CudaLaunch launch(device_);
    kernels::bias_grad(launch, pdy, d.n, int(d.cout), dbias.data<float>());
  }
}

}  // namespace peng::cuda
