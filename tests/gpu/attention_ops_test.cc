// CudaBackend's exact attention against the CPU backend (label gpu; skips without a GPU):
// MHA, GQA and MQA at odd sizes and at GPT-2 small's and a Llama-shaped model's, poisoned
// outputs, bit-identical repeats, the work fraction and the argument checks.
#include <limits>

#include "tests/gpu/gpu_op_check.h"

namespace peng {
namespace {

using namespace gpu_test;

struct Case {
  int64_t b, t;
  int h, kv;
  int64_t hd;
};

std::string name(const Case& c) {
  return detail::concat("B ", c.b, " T ", c.t, " H ", c.h, " K ", c.kv, " hd ", c.hd);
}
Shape qkv_shape(const Case& c) { return {c.b, c.t, (c.h + 2 * c.kv) * c.hd}; }
Shape out_shape(const Case& c) { return {c.b, c.t, c.h * c.hd}; }
Shape att_shape(const Case& c) { return {c.b, c.h, c.t, c.t}; }
// Sums over more than 256 keys or query rows are held to kF32LongReduction.
double tolerance(const Case& c) { return c.t > 256 ? kF32LongReduction : kF32; }

const Case kCases[] = {
    {2, 37, 3, 3, 12},      // MHA, T not a multiple of a warp
    {2, 33, 4, 2, 20},      // GQA
    {1, 70, 6, 1, 7},       // MQA, odd hd
    {1, 9, 2, 1, 130},      // hd above one pass of the row sums' columns
    {4, 1024, 12, 12, 64},  // GPT-2 small
    {2, 512, 16, 4, 64},    // Llama-shaped GQA
};

TEST(CudaAttentionOps, ForwardBackwardMatchCpu) {
  PENG_REQUIRE_GPU();
  uint64_t seed = 1;
  for (const Case& c : kCases) {
    const Tensor qkv = random(qkv_shape(c), seed++, -2, 2), dout = random(out_shape(c), seed++);
    Tensor out = on_gpu(poisoned(out_shape(c))), att = on_gpu(poisoned(att_shape(c)));
    gpu().attention_forward(on_gpu(qkv), c.h, c.kv, out, att);
    Tensor out_ref = Tensor::empty(out_shape(c)), att_ref = Tensor::empty(att_shape(c));
    cpu_backend().attention_forward(qkv, c.h, c.kv, out_ref, att_ref);
    EXPECT_LE(relative_error(on_cpu(out), out_ref), tolerance(c)) << name(c);
    EXPECT_LE(relative_error(on_cpu(att), with_upper(att_ref, 0.0f)), tolerance(c)) << name(c);

    Tensor dqkv = on_gpu(poisoned(qkv_shape(c)));
    gpu().attention_backward(on_gpu(dout), on_gpu(qkv), att, c.h, c.kv, dqkv);
    Tensor dqkv_ref = Tensor::empty(qkv_shape(c));
    cpu_backend().attention_backward(dout, qkv, att_ref, c.h, c.kv, dqkv_ref);
    EXPECT_LE(relative_error(on_cpu(dqkv), dqkv_ref), tolerance(c)) << name(c);
  }
}

TEST(CudaAttentionOps, BackwardNeverReadsAboveTheDiagonal) {
  PENG_REQUIRE_GPU();
  const Case c{2, 45, 4, 2, 16};
  const Tensor qkv = random(qkv_shape(c), 3, -2, 2), dout = random(out_shape(c), 4);
  Tensor out = Tensor::empty(out_shape(c)), att = Tensor::empty(att_shape(c));
  cpu_backend().attention_forward(qkv, c.h, c.kv, out, att);
  Tensor dqkv = on_gpu(poisoned(qkv_shape(c)));
  gpu().attention_backward(on_gpu(dout), on_gpu(qkv),
                           on_gpu(with_upper(att, std::numeric_limits<float>::quiet_NaN())), c.h,
                           c.kv, dqkv);
  Tensor dqkv_ref = Tensor::empty(qkv_shape(c));
  cpu_backend().attention_backward(dout, qkv, att, c.h, c.kv, dqkv_ref);
  EXPECT_LE(relative_error(on_cpu(dqkv), dqkv_ref), kF32);
}

TEST(CudaAttentionOps, BitIdenticalRunToRun) {
  PENG_REQUIRE_GPU();
  const Case c{2, 256, 8, 2, 64};
  const Tensor qkv = on_gpu(random(qkv_shape(c), 5, -2, 2)), dout = on_gpu(random(out_shape(c), 6));
  std::vector<float> first[3];
  for (int run = 0; run < 2; ++run) {
    Tensor out = Tensor::empty(out_shape(c), DType::kF32, Device::cuda(0));
    Tensor att = Tensor::empty(att_shape(c), DType::kF32, Device::cuda(0));
    Tensor dqkv = Tensor::empty(qkv_shape(c), DType::kF32, Device::cuda(0));
    gpu().attention_forward(qkv, c.h, c.kv, out, att);
    gpu().attention_backward(dout, qkv, att, c.h, c.kv, dqkv);
    const Tensor outs[3] = {on_cpu(out), on_cpu(att), on_cpu(dqkv)};
    for (int i = 0; i < 3; ++i) {
      std::vector<float> v(outs[i].data<float>(), outs[i].data<float>() + outs[i].numel());
      if (run == 0) {
        first[i] = std::move(v);
      } else {
        EXPECT_TRUE(v == first[i]) << "output " << i;
      }
    }
  }
}

TEST(CudaAttentionOps, WorkFractionIsTheLowerTriangle) {
  PENG_REQUIRE_GPU();
  EXPECT_EQ(gpu().attention_work_fraction(1), 1.0);
  EXPECT_EQ(gpu().attention_work_fraction(1024), 1025.0 / 2048.0);
}

TEST(CudaAttentionOps, BadArgumentsAreClearErrors) {
  PENG_REQUIRE_GPU();
  const Tensor qkv = on_gpu(random({2, 5, 3 * 8}, 1));
  Tensor out = Tensor::empty({2, 5, 8}, DType::kF32, Device::cuda(0));
  Tensor att = Tensor::empty({2, 2, 5, 5}, DType::kF32, Device::cuda(0));
  EXPECT_THROW(gpu().attention_forward(qkv, 3, 2, out, att), Error);  // 3 not a multiple of 2
  EXPECT_THROW(gpu().attention_forward(qkv, 2, 1, out, att), Error);  // hd 6: out must be 12 wide
  Tensor cpu_out = Tensor::empty({2, 5, 8});
  EXPECT_THROW(gpu().attention_forward(qkv, 2, cpu_out, att), Error);  // wrong device
  Tensor dqkv = qkv.flat_view(0, qkv.shape());
  EXPECT_THROW(gpu().attention_backward(on_gpu(random({2, 5, 8}, 2)), qkv, att, 2, dqkv),
               Error);  // dqkv overlaps qkv
  try {
    gpu().attention_forward(qkv, 5, 5, out, att);
    ADD_FAILURE() << "no error for 15 groups of a width of 24";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("attention_forward: qkv must be (B, T, (H + 2K) * hd)"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace peng
