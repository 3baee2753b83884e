#include "peng/core/tensor.h"
#include "peng/core/parameter.h"

#include <gtest/gtest.h>

#include <cmath>

namespace peng {
namespace {

TEST(Tensor, ViewsShareStorage) {
  Tensor t = Tensor::zeros({4, 3});
  Tensor v = t.view({2, 6});
  Tensor s = t.slice(1, 3);
  EXPECT_EQ(s.shape(), (Shape{2, 3}));
  s.data<float>()[0] = 5.0f;
  EXPECT_EQ(t.data<float>()[3], 5.0f);
  EXPECT_EQ(v.data<float>()[3], 5.0f);
  EXPECT_EQ(t.view({-1}).shape(), (Shape{12}));
  EXPECT_THROW(t.view({5, 3}), Error);
  EXPECT_THROW(t.slice(2, 5), Error);
  EXPECT_THROW(t.data<int32_t>(), Error);
}

TEST(Tensor, CloneIsDeep) {
  Tensor t = Tensor::from_vector<float>({1, 2, 3}, {3});
  Tensor c = t.clone();
  c.data<float>()[0] = 9;
  EXPECT_EQ(t.data<float>()[0], 1);
}

TEST(DType, HalfConversionsRoundTripAndRound) {
  // Every bf16 / f16 bit pattern (except NaNs) survives f32 and back.
  for (uint32_t b = 0; b < 65536; ++b) {
    float f = bf16_to_f32(uint16_t(b));
    if (!std::isnan(f)) {
      EXPECT_EQ(f32_to_bf16(f), b) << b;
    }
    float h = f16_to_f32(uint16_t(b));
    if (!std::isnan(h)) {
      EXPECT_EQ(f32_to_f16(h), b) << b;
    }
  }
  EXPECT_EQ(f16_to_f32(f32_to_f16(1.0f + 1.0f / 4096)), 1.0f);  // ties to even
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(3.0f)), 3.0f);
  EXPECT_TRUE(std::isinf(f16_to_f32(f32_to_f16(1e6f))));
}

TEST(Tensor, ToDtype) {
  Tensor t = Tensor::from_vector<float>({1.5f, -2.0f, 65504.0f}, {3});
  Tensor h = t.to_dtype(DType::kF16);
  Tensor back = h.to_dtype(DType::kF32);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(back.data<float>()[i], t.data<float>()[i]);
}

}  // namespace
}  // namespace peng

namespace peng {
namespace {

// take_shard / join_shards: a (4, 12) tensor split over 2 ranks along dim 1 in 3 blocks
// (c_attn's q | k | v columns), along dim 0, and replicated, round-trips exactly.
TEST(Shards, TakeAndJoinRoundTripWithBlocks) {
  Tensor full = Tensor::empty({4, 12});
  for (int64_t i = 0; i < full.numel(); ++i) full.data<float>()[i] = float(i);
  for (ShardSpec spec : {ShardSpec{.dim = 1, .parts = 2, .index = 0, .blocks = 3},
                         ShardSpec{.dim = 0, .parts = 2, .index = 0}, ShardSpec{}}) {
    std::vector<Tensor> pieces;
    Parameter p;
    p.name = "w";
    p.global_shape = {4, 12};
    for (int r = 0; r < spec.parts; ++r) {
      p.shard = spec;
      p.shard.index = r;
      pieces.push_back(take_shard(full, p));
      EXPECT_EQ(pieces.back().shape(), shard_shape("w", {4, 12}, p.shard));
    }
    if (spec.dim == 1) {
      // rank 1 holds columns 2-3 of each block of 4: 2, 3, 6, 7, 10, 11 of row 0.
      const float* r1 = pieces[1].data<float>();
      EXPECT_EQ(std::vector<float>(r1, r1 + 6), (std::vector<float>{2, 3, 6, 7, 10, 11}));
    }
    Tensor joined = join_shards(pieces, p);
    ASSERT_EQ(joined.shape(), full.shape());
    for (int64_t i = 0; i < full.numel(); ++i) ASSERT_EQ(joined.data<float>()[i], float(i));
  }
  EXPECT_THROW(shard_shape("w", {4, 10}, {.dim = 1, .parts = 2, .index = 0, .blocks = 3}), Error);
}

}  // namespace
}  // namespace peng
