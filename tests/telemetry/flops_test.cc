// FLOPs accounting against hand-computed values, the CPU attention kernel's executed
// share, and the MFU arithmetic.
#include <gtest/gtest.h>

#include "core/backend.h"
#include "models/gpt2/config.h"
#include "models/gpt2/gpt2.h"
#include "telemetry/flops.h"

namespace peng {
namespace {

// GPT-2 124M at T = 1024, by hand: 124,439,808 parameters, of which wpe 1024 x 768 =
// 786,432 take part in no matmul, so N = 123,653,376 (wte counts once, as the tied head,
// with the real 50257 rows). 6N = 741,920,256; 12 L C T = 12 * 12 * 768 * 1024 =
// 113,246,208.
TEST(Flops, Gpt2_124mByHand) {
  const Gpt2Config c = gpt2_preset("gpt2-124m");
  EXPECT_EQ(gpt2_num_params(c, true), 124439808);
  const FlopsShape s{.params = gpt2_num_params(c, false),
                     .n_layer = c.n_layer,
                     .n_embd = c.n_embd,
                     .seq_len = 1024};
  EXPECT_EQ(s.params, 123653376);
  EXPECT_EQ(model_flops_per_token(s), 741920256.0 + 113246208.0);
  EXPECT_EQ(causal_model_flops_per_token(s), 741920256.0 + 56623104.0);
  EXPECT_EQ(hardware_flops_per_token(s), model_flops_per_token(s));  // f = 1, no recompute
}

// A custom 2-layer, 64-wide model with a 256-token vocabulary at T = 16:
// wte 256*64 = 16384; per layer ln 2*128, c_attn 64*192+192, attn c_proj 64*64+64,
// c_fc 64*256+256, mlp c_proj 256*64+64 = 49984; ln_f 128 -> N = 116480.
TEST(Flops, CustomConfigByHand) {
  Gpt2Config c;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_embd = 64;
  c.vocab_size = 256;
  c.max_seq_len = 16;
  const FlopsShape s{.params = gpt2_num_params(c, false),
                     .n_layer = 2,
                     .n_embd = 64,
                     .seq_len = 16,
                     .attention_fraction = 0.5,
                     .recompute_flops_per_token = 1000};
  EXPECT_EQ(s.params, 116480);
  EXPECT_EQ(model_flops_per_token(s), 6.0 * 116480 + 12.0 * 2 * 64 * 16);  // 723,456
  EXPECT_EQ(causal_model_flops_per_token(s), 6.0 * 116480 + 6.0 * 2 * 64 * 16);
  EXPECT_EQ(hardware_flops_per_token(s), 6.0 * 116480 + 0.5 * 12 * 2 * 64 * 16 + 1000);
}

// Query blocks of 16 rows see keys [0, i1): sum of 16 * i1 over the blocks, out of T^2.
TEST(Flops, CpuAttentionExecutesTheCausalBlocks) {
  const Backend& be = cpu_backend();
  EXPECT_EQ(be.attention_work_fraction(16), 1.0);
  EXPECT_EQ(be.attention_work_fraction(64), 16.0 * (16 + 32 + 48 + 64) / (64 * 64));  // 0.625
  EXPECT_EQ(be.attention_work_fraction(128), 0.5625);
  EXPECT_EQ(be.attention_work_fraction(1024), 0.5078125);
  EXPECT_EQ(be.attention_work_fraction(20), (16.0 * 16 + 4.0 * 20) / 400);  // a partial block
}

// 1e6 tokens of GPT-2 124M in 10 s on 8 devices of 989 TFLOP/s each.
TEST(Flops, Utilisation) {
  const double fpt = 855166464.0;
  EXPECT_DOUBLE_EQ(utilisation(fpt, 1e6, 10, 8, 989e12), fpt * 1e6 / 10 / 8 / 989e12);
  EXPECT_NEAR(utilisation(fpt, 1e6, 10, 8, 989e12), 0.0108085, 1e-7);  // about 1.08%
  EXPECT_EQ(utilisation(fpt, 1e6, 0, 8, 989e12), 0);                   // no time yet
  EXPECT_EQ(utilisation(fpt, 1e6, 10, 8, 0), 0);                       // no peak
}

}  // namespace
}  // namespace peng
