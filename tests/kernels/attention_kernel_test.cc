// kernels/attention.cuh under the CUDA emulation against CpuBackend's attention (MHA, GQA, MQA).
#include "tests/cuda_emu/emu.h"  // first: the kernels compile against it

#include <limits>

#include "peng/core/cuda/kernels/attention.cuh"
#include "tests/kernels/bf16_check.h"

namespace peng {
namespace {

using namespace kernel_test;
namespace k = cuda::kernels;

struct Case {
  int64_t b;
  int t, h, kv, hd;
};
// MHA with T not a multiple of a warp; GQA (groups of 2); MQA (one kv head for 6 query heads,
// odd hd); T = 1 with hd = 1; hd above one pass of columns (kAttChunk = 128) of the row sums.
const Case kCases[] = {
    {2, 37, 3, 3, 12}, {2, 33, 4, 2, 20}, {1, 19, 6, 1, 7}, {2, 1, 2, 2, 1}, {1, 6, 2, 1, 130}};

Shape qkv_shape(const Case& c) { return {c.b, c.t, int64_t(c.h + 2 * c.kv) * c.hd}; }
k::AttDims dims(const Case& c) { return {c.t, c.h, c.kv, c.hd}; }
std::string name(const Case& c) {
  return detail::concat("B ", c.b, " T ", c.t, " H ", c.h, " K ", c.kv, " hd ", c.hd);
}

TEST(AttentionKernel, ForwardMatchesCpu) {
  uint64_t seed = 1;
  for (const Case& c : kCases) {
    Tensor qkv = random(qkv_shape(c), seed++, -2, 2);
    Tensor out = poisoned({c.b, c.t, int64_t(c.h) * c.hd});
    Tensor att = poisoned({c.b, c.h, c.t, c.t});
    emu::Launch launch;
    k::attention_forward(launch, qkv.data<const float>(), c.b, dims(c), out.data<float>(),
                         att.data<float>());
    Tensor out_ref = Tensor::empty(out.shape()), att_ref = Tensor::empty(att.shape());
    cpu_backend().attention_forward(qkv, c.h, c.kv, out_ref, att_ref);
    EXPECT_LE(relative_error(out, out_ref), kF32) << name(c);
    // The probabilities below and on the diagonal; exact zeros above it (every element written).
    EXPECT_LE(relative_error(att, with_upper(att_ref, 0.0f)), kF32) << name(c);
  }
}

TEST(AttentionKernel, BackwardMatchesCpu) {
  uint64_t seed = 100;
  for (const Case& c : kCases) {
    Tensor qkv = random(qkv_shape(c), seed++, -2, 2);
    Tensor dout = random({c.b, c.t, int64_t(c.h) * c.hd}, seed++);
    Tensor out = Tensor::empty(dout.shape()), att = Tensor::empty({c.b, c.h, c.t, c.t});
    cpu_backend().attention_forward(qkv, c.h, c.kv, out, att);
    // NaN above the diagonal: the backward must never read it.
    const Tensor att_masked = with_upper(att, std::numeric_limits<float>::quiet_NaN());
    Tensor dqkv = poisoned(qkv.shape());
    emu::Launch launch;
    k::attention_backward(launch, dout.data<const float>(), qkv.data<const float>(),
                          att_masked.data<const float>(), c.b, dims(c), dqkv.data<float>());
    Tensor dqkv_ref = Tensor::empty(qkv.shape());
    cpu_backend().attention_backward(dout, qkv, att, c.h, c.kv, dqkv_ref);
    EXPECT_LE(relative_error(dqkv, dqkv_ref), kF32) << name(c);
  }
}

TEST(AttentionKernel, BackwardIsDeterministic) {
  const Case c{2, 45, 4, 2, 20};
  Tensor qkv = random(qkv_shape(c), 7, -2, 2), dout = random({c.b, c.t, int64_t(c.h) * c.hd}, 8);
  Tensor out = Tensor::empty(dout.shape()), att = Tensor::empty({c.b, c.h, c.t, c.t});
  emu::Launch fwd;
  k::attention_forward(fwd, qkv.data<const float>(), c.b, dims(c), out.data<float>(),
                       att.data<float>());
  std::vector<float> first;
  for (int run = 0; run < 2; ++run) {
    Tensor dqkv = poisoned(qkv.shape());
    emu::Launch launch;
    k::attention_backward(launch, dout.data<const float>(), qkv.data<const float>(),
                          att.data<const float>(), c.b, dims(c), dqkv.data<float>());
    std::vector<float> got(dqkv.data<float>(), dqkv.data<float>() + dqkv.numel());
    if (run == 0) {
      first = got;
    } else {
      EXPECT_EQ(got, first);
    }
  }
}

TEST(AttentionKernel, Bf16WithinBf16Rounding) {
  const Case c{2, 29, 4, 2, 20};
  // Inputs exactly representable in bf16, so only the kernel's roundings differ.
  const Tensor qkv = from_bf16(to_bf16(random(qkv_shape(c), 11, -2, 2)), qkv_shape(c));
  const Shape out_shape{c.b, c.t, int64_t(c.h) * c.hd};
  const Tensor dout = from_bf16(to_bf16(random(out_shape, 12)), out_shape);
  std::vector<__nv_bfloat16> qkv_b = to_bf16(qkv), dout_b = to_bf16(dout);
  std::vector<__nv_bfloat16> out_b(size_t(c.b * c.t * c.h * c.hd)), dqkv_b(qkv_b.size());
  Tensor att = poisoned({c.b, c.h, c.t, c.t});
  emu::Launch launch;
  k::attention_forward(launch, qkv_b.data(), c.b, dims(c), out_b.data(), att.data<float>());
  k::attention_backward(launch, dout_b.data(), qkv_b.data(), att.data<const float>(), c.b, dims(c),
                        dqkv_b.data());
  Tensor out_ref = Tensor::empty(out_shape), att_ref = Tensor::empty(att.shape());
  cpu_backend().attention_forward(qkv, c.h, c.kv, out_ref, att_ref);
  Tensor dqkv_ref = Tensor::empty(qkv.shape());
  cpu_backend().attention_backward(dout, qkv, att_ref, c.h, c.kv, dqkv_ref);
  EXPECT_LE(relative_error(from_bf16(out_b, out_shape), out_ref), 1e-2);
  EXPECT_LE(relative_error(from_bf16(dqkv_b, qkv.shape()), dqkv_ref), 1e-2);
}

}  // namespace
}  // namespace peng
