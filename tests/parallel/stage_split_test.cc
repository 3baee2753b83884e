// Pipeline stage splits (parallel/pipeline/stage_split.h): even, Megatron's first/last stage
// sizes, an explicit list, and the split a cost model balances; bad lists are one error
// naming the flag.
#include <gtest/gtest.h>

#include "peng/core/error.h"
#include "peng/parallel/pipeline/schedule_registry.h"
#include "peng/parallel/pipeline/stage_split.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

using testing::input_error_of;

TEST(StageSplit, EvenFirstLastAndListed) {
  EXPECT_EQ(even_split(8, 4), (StageSplit{2, 2, 2, 2}));
  EXPECT_NE(input_error_of([] { even_split(6, 4); }).find("is not divisible by pp x virtual"),
            std::string::npos);
  EXPECT_EQ(first_last_split(8, 4, 0, 0), (StageSplit{2, 2, 2, 2}));
  EXPECT_EQ(first_last_split(10, 4, 1, 3), (StageSplit{1, 3, 3, 3}));
  EXPECT_EQ(first_last_split(7, 4, 0, 1), (StageSplit{2, 2, 2, 1}));
  EXPECT_EQ(first_last_split(4, 2, 1, 0), (StageSplit{1, 3}));
  EXPECT_EQ(first_last_split(4, 2, 3, 1), (StageSplit{3, 1}));
  EXPECT_EQ(first_last_split(8, 4, 1, 1), (StageSplit{1, 3, 3, 1}));
  EXPECT_NE(input_error_of([] { first_last_split(8, 4, 1, 2); }).find("leaves 5 for 2 other"),
            std::string::npos);
  EXPECT_NE(input_error_of([] { first_last_split(4, 2, 2, 1); }).find("leaves 1 for 0 other"),
            std::string::npos);
  EXPECT_EQ(parse_split("1,3", 4, 2), (StageSplit{1, 3}));
  EXPECT_EQ(format_split({1, 3, 2}), "1,3,2");
  for (const auto& [list, says] : std::vector<std::pair<std::string, std::string>>{
           {"1,2", "holds 3 layers, the model has 4"},
           {"1,1,2", "lists 3 stages, the pipeline has 2"},
           {"0,4", "each at least 1"},
           {"1,x", "each at least 1"},
           {"", "each at least 1"},
           {"1,,3", "each at least 1"}}) {
    EXPECT_NE(input_error_of([&] { parse_split(list, 4, 2); }).find(says), std::string::npos)
        << list;
  }
}

TEST(StageSplit, BalancedByCost) {
  // Equal layers, no extras: even.
  EXPECT_EQ(balanced_split({.layer = std::vector<double>(8, 1.0)}, 4), (StageSplit{2, 2, 2, 2}));
  // A head worth 1.3 layers on the last stage: one layer moves off it.
  const LayerCosts head{.layer = std::vector<double>(8, 1.0), .last_extra = 1.3};
  EXPECT_EQ(balanced_split(head, 2), (StageSplit{5, 3}));
  EXPECT_EQ(stage_costs({5, 3}, head), (std::vector<double>{5.0, 4.3}));
  // A head worth 6 layers (a 150K vocabulary) on 4 stages of 16 layers: the last stage keeps
  // one, and no stage costs more than the best possible maximum.
  const LayerCosts big{.layer = std::vector<double>(16, 1.0), .first_extra = 0.2, .last_extra = 6};
  const StageSplit s = balanced_split(big, 4);
  EXPECT_EQ(s, (StageSplit{5, 5, 5, 1}));
  const std::vector<double> c = stage_costs(s, big);
  EXPECT_DOUBLE_EQ(*std::max_element(c.begin(), c.end()), 7.0);
  // Every stage keeps a layer even when the head outweighs the rest.
  EXPECT_EQ(balanced_split({.layer = {1, 1}, .last_extra = 100}, 2), (StageSplit{1, 1}));
  EXPECT_NE(input_error_of([] {
              balanced_split({.layer = {1, 1}}, 3);
            }).find("is less than the 3 pipeline stages"),
            std::string::npos);
}

// The bubble check_schedule predicts with stages weighted by their costs (what peng train
// prints at start and `peng schedule --stage-costs` prints): equal stages give the ideal
// (p-1)/(m+p-1); a last stage 3.45 times the first idles the first.
TEST(StageSplit, WeightedStagesPredictTheBubble) {
  EXPECT_EQ(stage_weights({2.0, 3.0, 2.5}), (std::vector<int64_t>{100, 150, 125}));
  EXPECT_EQ(parse_stage_costs("1,3.45", 2), (std::vector<double>{1.0, 3.45}));
  EXPECT_NE(input_error_of([] { parse_stage_costs("1,0", 2); }).find("positive numbers"),
            std::string::npos);
  EXPECT_NE(input_error_of([] { parse_stage_costs("1", 2); }).find("lists 1 stages"),
            std::string::npos);
  const Schedule s = build_schedule("1f1b", 2, 1, 8);
  const auto bubble = [&](std::vector<int64_t> weights) {
    const ScheduleCheck c = check_schedule(
        s, 2, 1, 8, {.send_mode = SendMode::kBuffered, .stage_cost = std::move(weights)});
    EXPECT_TRUE(c.ok) << c.error;
    return c.idle_fraction();
  };
  EXPECT_NEAR(bubble({}), 1.0 / 9, 1e-12);
  EXPECT_NEAR(bubble({100, 100}), 1.0 / 9, 1e-12);
  EXPECT_NEAR(bubble({100, 345}), 0.378, 0.001);
  EXPECT_LT(bubble({118, 100}), bubble({100, 131}));  // the auto split of the vocab-4096 bench
}

}  // namespace
}  // namespace peng
