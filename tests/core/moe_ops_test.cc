// The CPU backend's Mixture-of-Experts ops (core/cpu/moe.cc) against float64 references
// written here: router scores and top-k choice (softmax and sigmoid, the selection bias that
// only selects, norm_topk), the backward against central finite differences of
// L = sum(dweights * weights) + sum_t sum_e aux_e * s_te / sum_f s_tf, and the row moves.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "peng/core/backend.h"

namespace peng {
namespace {

Backend& be() { return cpu_backend(); }

Tensor randn(const Shape& s, std::mt19937& rng, float stddev = 1.0f) {
  Tensor t = Tensor::empty(s);
  std::normal_distribution<float> d(0.0f, stddev);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(rng);
  return t;
}

// Scores of one row in double.
std::vector<double> scores_of(const float* logits, int64_t e, bool sigmoid) {
  std::vector<double> s(static_cast<size_t>(e));
  double mx = logits[0], sum = 0;
  for (int64_t j = 0; j < e; ++j) mx = std::max(mx, double(logits[j]));
  for (int64_t j = 0; j < e; ++j) {
    s[size_t(j)] = sigmoid ? 1 / (1 + std::exp(-double(logits[j]))) : std::exp(logits[j] - mx);
    sum += s[size_t(j)];
  }
  if (!sigmoid) {
    for (double& v : s) v /= sum;
  }
  return s;
}

struct Routed {
  Tensor scores, chosen, weights, prob_sums;
};

Routed route(const Tensor& logits, const Tensor& bias, const MoeRouting& r) {
  const int64_t n = logits.dim(0), e = logits.dim(1);
  Routed out{Tensor::empty({n, e}), Tensor::empty({n, r.topk}, DType::kI32),
             Tensor::empty({n, r.topk}), Tensor::empty({e}, DType::kF64)};
  be().moe_route(logits, bias, r, out.scores, out.chosen, out.weights, out.prob_sums);
  return out;
}

class MoeRoute : public ::testing::TestWithParam<MoeRouting> {};

TEST_P(MoeRoute, MatchesTheFloat64Reference) {
  const MoeRouting r = GetParam();
  std::mt19937 rng(3);
  const int64_t n = 37, e = 8;
  const Tensor logits = randn({n, e}, rng), bias = randn({e}, rng, 0.05f);
  const Routed got = route(logits, bias, r);
  std::vector<double> prob(static_cast<size_t>(e), 0.0);
  for (int64_t t = 0; t < n; ++t) {
    const std::vector<double> s = scores_of(logits.data<float>() + t * e, e, r.sigmoid);
    double sum = 0, z = 0;
    for (int64_t j = 0; j < e; ++j) {
      EXPECT_NEAR(got.scores.data<float>()[t * e + j], s[size_t(j)], 1e-6);
      sum += s[size_t(j)];
    }
    for (int64_t j = 0; j < e; ++j) prob[size_t(j)] += s[size_t(j)] / sum;
    // The chosen experts are the k largest of scores + bias, in decreasing order.
    std::vector<int> order(static_cast<size_t>(e));
    for (int j = 0; j < e; ++j) order[size_t(j)] = j;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      return s[size_t(a)] + bias.data<float>()[a] > s[size_t(b)] + bias.data<float>()[b];
    });
    for (int j = 0; j < r.topk; ++j) {
      EXPECT_EQ(got.chosen.data<int32_t>()[t * r.topk + j], order[size_t(j)]) << "row " << t;
      z += s[size_t(order[size_t(j)])];
    }
    for (int j = 0; j < r.topk; ++j) {
      const double w = s[size_t(order[size_t(j)])] / (r.norm_topk ? z : 1.0);
      EXPECT_NEAR(got.weights.data<float>()[t * r.topk + j], w, 1e-6);
    }
  }
  for (int64_t j = 0; j < e; ++j)
    EXPECT_NEAR(got.prob_sums.data<double>()[j], prob[size_t(j)], 1e-5);
}

// L = sum(dw * weights) + sum_t sum_e aux_e s_te / S_t with the choice held fixed.
double loss(const Tensor& logits, const Tensor& chosen, const std::vector<double>& dw,
            const std::vector<double>& aux, const MoeRouting& r) {
  const int64_t n = logits.dim(0), e = logits.dim(1), k = r.topk;
  double total = 0;
  for (int64_t t = 0; t < n; ++t) {
    const std::vector<double> s = scores_of(logits.data<float>() + t * e, e, r.sigmoid);
    double sum = 0, z = 0;
    for (double v : s) sum += v;
    for (int64_t j = 0; j < k; ++j) z += s[size_t(chosen.data<int32_t>()[t * k + j])];
    for (int64_t j = 0; j < k; ++j) {
      const double w = s[size_t(chosen.data<int32_t>()[t * k + j])];
      total += dw[size_t(t * k + j)] * (r.norm_topk ? w / z : w);
    }
    for (int64_t j = 0; j < e; ++j) total += aux[size_t(j)] * s[size_t(j)] / sum;
  }
  return total;
}

TEST_P(MoeRoute, BackwardMatchesFiniteDifferences) {
  const MoeRouting r = GetParam();
  std::mt19937 rng(5);
  const int64_t n = 9, e = 6;
  Tensor logits = randn({n, e}, rng);
  const Routed fwd = route(logits, Tensor::zeros({e}), r);
  const Tensor dweights = randn({n, r.topk}, rng), aux = randn({e}, rng);
  Tensor dlogits = Tensor::empty({n, e});
  be().moe_route_backward(dweights, fwd.scores, fwd.chosen, aux, r, dlogits);
  const std::vector<double> dw(dweights.data<float>(), dweights.data<float>() + dweights.numel());
  const std::vector<double> a(aux.data<float>(), aux.data<float>() + e);
  for (int64_t i = 0; i < logits.numel(); ++i) {
    float* x = logits.data<float>() + i;
    const float x0 = *x, h = 1e-2f;
    *x = x0 + h;
    const double up = loss(logits, fwd.chosen, dw, a, r);
    *x = x0 - h;
    const double down = loss(logits, fwd.chosen, dw, a, r);
    *x = x0;
    const double numeric = (up - down) / (2.0 * double(h));
    EXPECT_NEAR(dlogits.data<float>()[i], numeric, 1e-3 + 1e-3 * std::abs(numeric)) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, MoeRoute,
    ::testing::Values(MoeRouting{.topk = 2}, MoeRouting{.topk = 2, .norm_topk = true},
                      MoeRouting{.topk = 3, .sigmoid = true},
                      MoeRouting{.topk = 3, .sigmoid = true, .norm_topk = true}));

// The bias moves an expert into the choice; its weight stays its score.
TEST(MoeRouteBias, SelectsButDoesNotWeight) {
  const Tensor logits = Tensor::from_vector<float>({2.0f, 1.0f, 0.0f, -1.0f}, {1, 4});
  const Tensor bias = Tensor::from_vector<float>({0.0f, 0.0f, 0.0f, 0.9f}, {4});
  const Routed got = route(logits, bias, {.topk = 2, .sigmoid = true});
  EXPECT_EQ(got.chosen.data<int32_t>()[0], 3);  // 0.269 + 0.9 beats 0.881
  EXPECT_EQ(got.chosen.data<int32_t>()[1], 0);
  EXPECT_NEAR(got.weights.data<float>()[0], 1 / (1 + std::exp(1.0)), 1e-6);
  EXPECT_NEAR(got.weights.data<float>()[1], 1 / (1 + std::exp(-2.0)), 1e-6);
}

TEST(MoeRows, GatherScatterAndDot) {
  const Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2});
  const Tensor index = Tensor::from_vector<int32_t>({2, 0, 2}, {3});
  const Tensor weight = Tensor::from_vector<float>({1, 10, -1}, {3});
  Tensor out = Tensor::empty({3, 2});
  be().gather_rows(x, index, weight, out);
  EXPECT_EQ(std::vector<float>(out.data<float>(), out.data<float>() + 6),
            (std::vector<float>{5, 6, 10, 20, -5, -6}));
  Tensor acc = Tensor::zeros({3, 2});
  be().scatter_add_rows(x, index, Tensor(), acc);  // rows 0 and 2 of x both land on row 2
  EXPECT_EQ(std::vector<float>(acc.data<float>(), acc.data<float>() + 6),
            (std::vector<float>{3, 4, 0, 0, 6, 8}));
  Tensor dots = Tensor::empty({3});
  be().rows_dot(x, out, dots);
  EXPECT_EQ(std::vector<float>(dots.data<float>(), dots.data<float>() + 3),
            (std::vector<float>{17, 110, -61}));
  const Tensor bad = Tensor::from_vector<int32_t>({0, 3, 1}, {3});
  EXPECT_THROW(be().gather_rows(x, bad, Tensor(), out), Error);
  EXPECT_THROW(be().scatter_add_rows(x, bad, Tensor(), acc), Error);
}

}  // namespace
}  // namespace peng
