// FLOPs accounting against hand-computed values, the CPU attention kernel's executed
// share, and the MFU arithmetic.
#include <gtest/gtest.h>

#include "peng/core/backend.h"
#include "peng/launch/model_setup.h"
#include "peng/models/gpt2/config.h"
#include "peng/models/gpt2/gpt2.h"
#include "peng/telemetry/flops.h"

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

// Llama 3.1 8B at T = 8192, by hand (docs/TELEMETRY.md, "The Llama family"). Per layer:
// q 4096 x 4096 = 16,777,216; k and v 1024 x 4096 = 4,194,304 each (8 kv heads of 128:
// GQA's smaller projections); o 16,777,216; SwiGLU's gate, up and down 4096 x 14336 =
// 58,720,256 each; two RMSNorms 8,192: 218,112,000. N = 32 layers (6,979,584,000) + the
// final norm 4,096 + the untied LM head 128256 x 4096 = 525,336,576: 7,504,924,672. The
// input embedding (another 525,336,576; 8,030,261,248 parameters in all) is only looked up.
// 6N = 45,029,548,032; 12 L (H hd) T = 12 * 32 * 4096 * 8192 = 12,884,901,888.
TEST(Flops, Llama31_8bByHand) {
  const DecoderConfig c = model_preset("llama3.1-8b");
  EXPECT_EQ(count_parameters(c), 8030261248);
  const FlopsShape s = flops_shape(c, 8192);
  EXPECT_EQ(s.params, 7504924672);
  EXPECT_EQ(s.n_layer, 32);
  EXPECT_EQ(s.n_embd, 4096);
  EXPECT_EQ(model_flops_per_token(s), 45029548032.0 + 12884901888.0);
  EXPECT_EQ(causal_model_flops_per_token(s), 45029548032.0 + 6442450944.0);
  // Qwen3 0.6B: the attention term takes H * head_dim = 16 * 128 = 2048, not n_embd 1024;
  // the tied head counts once (596,049,920 parameters, all in matmuls).
  const FlopsShape q = flops_shape(model_preset("qwen3-0.6b"), 4096);
  EXPECT_EQ(q.n_embd, 2048);
  EXPECT_EQ(q.params, 596049920);
}

// DeepSeek-MoE 16B at T = 4096, by hand (docs/TELEMETRY.md, "Mixture of Experts"): only the
// parameters a token is multiplied with count. Attention per layer: q, k, v, o 2048 x 2048
// (16 heads of 128) = 16,777,216; two RMSNorms 4,096. Layer 0 is dense: SwiGLU 3 x 2048 x
// 10944 = 67,239,936 (84,021,248 with attention). Each of the 27 MoE layers: the router
// 64 x 2048 = 131,072, k = 6 of the 64 experts of 3 x 2048 x 1408 = 8,650,752 each
// (51,904,512), the 2 shared experts as one SwiGLU of 2816: 17,301,504; 86,118,400 with
// attention. N = 84,021,248 + 27 x 86,118,400 + the final norm 2,048 + the untied head
// 102400 x 2048 = 209,715,200: 2,618,935,296 (2.83B "activated" with the looked-up input
// embedding, as DeepSeek counts). All parameters: 16,375,728,128 (every expert, both
// embeddings). 6N = 15,713,611,776; 12 L (H hd) T = 12 * 28 * 2048 * 4096 = 2,818,572,288.
TEST(Flops, DeepSeekMoe16bCountsActivatedParameters) {
  const DecoderConfig c = model_preset("deepseek-moe-16b");
  EXPECT_EQ(count_parameters(c), 16375728128);
  const FlopsShape s = flops_shape(c, 4096);
  EXPECT_EQ(s.params, 2618935296);
  EXPECT_EQ(model_flops_per_token(s), 15713611776.0 + 2818572288.0);
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
