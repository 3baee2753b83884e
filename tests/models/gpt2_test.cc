// GPT-2 model: gradients against finite differences, padded vocabulary, init, state.
#include "peng/models/gpt2/gpt2.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "peng/models/sample.h"
#include "peng/optim/adamw.h"

namespace peng {
namespace {

Gpt2Config tiny_config() {
  Gpt2Config c;
  c.n_layer = 2;
  c.n_head = 3;
  c.n_embd = 24;
  c.vocab_size = 200;  // padded to 256
  c.max_seq_len = 9;
  return c;
}

std::pair<Tensor, Tensor> random_batch(int64_t b, int64_t t, int64_t vocab, uint64_t seed) {
  std::mt19937 gen{uint32_t(seed)};
  Tensor x = Tensor::empty({b, t}, DType::kI32), y = Tensor::empty({b, t}, DType::kI32);
  for (int64_t i = 0; i < b * t; ++i) {
    x.data<int32_t>()[i] = int32_t(gen() % vocab);
    y.data<int32_t>()[i] = int32_t(gen() % vocab);
  }
  return {x, y};
}

TEST(Gpt2, InitialLossIsNearLogVocab) {
  Gpt2Model m(tiny_config(), cpu_backend());
  m.init_random(1);
  auto [x, y] = random_batch(3, 7, 200, 2);
  EXPECT_NEAR(m.forward(x, y), std::log(200.0), 0.05);
}

// The directional derivative of the mean loss along a random direction d equals
// grad . d (central differences in f32, so a loose but bug-revealing tolerance).
TEST(Gpt2, GradientMatchesFiniteDifferences) {
  Gpt2Model m(tiny_config(), cpu_backend());
  m.init_random(3);
  auto [x, y] = random_batch(2, 9, 200, 4);
  m.parameters().zero_grads();
  m.forward(x, y);
  m.backward(1.0f / 18.0f);
  std::mt19937 gen(5);
  std::normal_distribution<double> nd;
  for (const Parameter& p : m.parameters().all()) {
    // One direction per parameter tensor, so a bug in any one gradient shows up.
    const int64_t n = p.name == "wte.weight" ? 200 * 24 : p.value.numel();
    // A unit-norm direction, so the step is small whatever the tensor's size.
    std::vector<float> d(static_cast<size_t>(n));
    double norm2 = 0;
    for (float& v : d) {
      v = float(nd(gen));
      norm2 += double(v) * v;
    }
    double analytic = 0;
    for (int64_t i = 0; i < n; ++i) {
      d[size_t(i)] = float(d[size_t(i)] / std::sqrt(norm2));
      analytic += double(d[size_t(i)]) * p.grad.data<float>()[i];
    }
    const float eps = 1e-2f;
    std::vector<float> saved(p.value.data<float>(), p.value.data<float>() + n);
    auto loss_at = [&](float s) {
      for (int64_t i = 0; i < n; ++i)
        p.value.data<float>()[i] = saved[size_t(i)] + s * d[size_t(i)];
      return m.forward(x, y);
    };
    const double numeric = (loss_at(eps) - loss_at(-eps)) / (2.0 * eps);
    loss_at(0);
    EXPECT_NEAR(analytic, numeric, 2e-4 + 1e-2 * std::abs(numeric)) << p.name;
  }
}

TEST(Gpt2, PaddedVocabularyRowsStayZero) {
  Gpt2Model m(tiny_config(), cpu_backend());
  m.init_random(7);
  AdamW opt(m.parameters(), cpu_backend(), {.weight_decay = 0.1f});
  for (int step = 0; step < 3; ++step) {
    auto [x, y] = random_batch(2, 9, 200, 10 + step);
    m.parameters().zero_grads();
    m.forward(x, y);
    m.backward(1.0f / 18.0f);
    opt.step(1e-2f);
  }
  const Parameter& wte = m.parameters().get("wte.weight");
  ASSERT_EQ(wte.value.shape(), (Shape{256, 24}));
  double real = 0;
  for (int64_t i = 0; i < 256 * 24; ++i) {
    if (i >= 200 * 24) {
      ASSERT_EQ(wte.value.data<float>()[i], 0.0f) << "padded row " << i / 24;
      ASSERT_EQ(wte.grad.data<float>()[i], 0.0f) << "padded row " << i / 24;
    } else {
      real += std::abs(wte.grad.data<float>()[i]);
    }
  }
  EXPECT_GT(real, 0.0);
}

TEST(Gpt2, InitIsDeterministicAndFollowsGpt2) {
  Gpt2Config c = tiny_config();
  c.n_embd = 96;
  c.n_head = 4;
  Gpt2Model a(c, cpu_backend()), b(c, cpu_backend()), other(c, cpu_backend());
  a.init_random(42);
  b.init_random(42);
  other.init_random(43);
  const int64_t n = a.parameters().numel();
  EXPECT_EQ(0, std::memcmp(a.parameters().flat_values().data<float>(),
                           b.parameters().flat_values().data<float>(), size_t(n) * 4));
  EXPECT_NE(0, std::memcmp(a.parameters().flat_values().data<float>(),
                           other.parameters().flat_values().data<float>(), size_t(n) * 4));
  auto stddev = [](const Tensor& t) {
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < t.numel(); ++i) {
      s += t.data<float>()[i];
      s2 += double(t.data<float>()[i]) * t.data<float>()[i];
    }
    const double mean = s / double(t.numel());
    return std::sqrt(s2 / double(t.numel()) - mean * mean);
  };
  EXPECT_NEAR(stddev(a.parameters().get("h.0.mlp.c_fc.weight").value), 0.02, 0.001);
  EXPECT_NEAR(stddev(a.parameters().get("h.1.mlp.c_proj.weight").value), 0.02 / 2.0, 0.0006);
  EXPECT_NEAR(stddev(a.parameters().get("h.1.attn.c_proj.weight").value), 0.01, 0.0008);
  EXPECT_EQ(a.parameters().get("h.0.attn.c_attn.bias").value.data<float>()[5], 0.0f);
  EXPECT_EQ(a.parameters().get("ln_f.weight").value.data<float>()[3], 1.0f);
  EXPECT_EQ(a.parameters().get("ln_f.bias").value.data<float>()[3], 0.0f);
}

TEST(Gpt2, StateRoundTripsAndHasRealVocabRows) {
  Gpt2Model a(tiny_config(), cpu_backend()), b(tiny_config(), cpu_backend());
  a.init_random(9);
  auto state = a.state();
  EXPECT_EQ(state.at("wte.weight").shape(), (Shape{200, 24}));
  b.load_state(state);
  EXPECT_EQ(0, std::memcmp(a.parameters().flat_values().data<float>(),
                           b.parameters().flat_values().data<float>(),
                           size_t(a.parameters().numel()) * 4));
  state.erase("ln_f.bias");
  EXPECT_THROW(b.load_state(state), Error);
}

TEST(Gpt2Config, RejectsBadSizes) {
  Gpt2Config c = tiny_config();
  c.n_head = 5;
  try {
    c.validate();
    FAIL() << "24 % 5 accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("n_head"), std::string::npos) << e.what();
  }
  EXPECT_THROW(gpt2_preset("gpt2-9000m"), InputError);
  EXPECT_EQ(gpt2_preset("gpt2-774m").n_layer, 36);
}

}  // namespace
}  // namespace peng

namespace peng {
namespace {

TEST(Sample, DeterministicBoundedAndGreedyAtTopK1) {
  Gpt2Model m(tiny_config(), cpu_backend());
  m.init_random(11);
  std::vector<int32_t> prompt = {1, 2, 3};
  auto a = sample_tokens(m, prompt, 12, 9, 40, 5, 50);
  auto b = sample_tokens(m, prompt, 12, 9, 40, 5, 50);
  EXPECT_EQ(a, b);
  ASSERT_EQ(a.size(), 12u);
  for (int32_t t : a) EXPECT_LT(t, 50);
  // top-k 1 is greedy: the argmax of the last real position's logits.
  auto g = sample_tokens(m, prompt, 1, 9, 1, 99);
  Tensor x = Tensor::zeros({1, 9}, DType::kI32);
  std::copy(prompt.begin(), prompt.end(), x.data<int32_t>());
  m.forward(x, Tensor());
  const float* row = m.logits().data<float>() + 2 * m.config().padded_vocab();
  EXPECT_EQ(g[0], std::max_element(row, row + 200) - row);
}

}  // namespace
}  // namespace peng
