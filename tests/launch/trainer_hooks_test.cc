// Trainer's hooks (launch/trainer.h): a step callback's metrics reach the metrics JSONL and
// its stop request ends the run; a learning-rate callback replaces the schedule; a program's
// own TokenSource trains exactly like the same tokens in a shard file. And
// parse_train_args, the `peng train` command line as a library function.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "peng/core/error.h"
#include "peng/launch/config.h"
#include "peng/launch/trainer.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

// The llama-tiny reference run's recipe, `steps` steps.
proto::TrainConfig tiny(int steps) {
  const testing::ReferenceRun e = testing::load_reference_run("llama-tiny");
  proto::TrainConfig c = parse_train_args(e.train_args(steps));
  c.mutable_logging()->set_quiet(true);
  return c;
}

std::vector<nlohmann::json> jsonl_lines(const std::filesystem::path& p) {
  std::vector<nlohmann::json> out;
  std::istringstream lines(testing::read_file(p));
  for (std::string line; std::getline(lines, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(TrainerHooks, StepCallbackMetricsAndStop) {
  testing::TempDir tmp;
  proto::TrainConfig c = tiny(10);
  c.mutable_logging()->set_metrics_jsonl((tmp / "m.jsonl").string());
  std::vector<int64_t> seen;
  TrainerHooks hooks{.on_step = [&](const StepRecord& r) {
    seen.push_back(r.step);
    return StepAction{.metrics = {{"twice_loss", 2 * r.loss}}, .stop = r.step == 2};
  }};
  const TrainReport report = Trainer(c, hooks).run();
  ASSERT_EQ(report.steps.size(), 3u);  // steps 0, 1, 2: stopped after the third
  EXPECT_EQ(seen, (std::vector<int64_t>{0, 1, 2}));
  int with_metric = 0;
  for (const nlohmann::json& j : jsonl_lines(tmp / "m.jsonl")) {
    if (!j.contains("loss")) continue;
    ASSERT_TRUE(j.contains("user/twice_loss")) << j.dump();
    EXPECT_DOUBLE_EQ(j["user/twice_loss"].get<double>(), 2 * j["loss"].get<double>());
    ++with_metric;
  }
  EXPECT_EQ(with_metric, 3);
}

TEST(TrainerHooks, MetricWithoutNameIsRefused) {
  TrainerHooks hooks{.on_step = [](const StepRecord&) {
    return StepAction{.metrics = {{"", 1.0}}};
  }};
  const std::string e = testing::input_error_of([&] { Trainer(tiny(2), hooks).run(); });
  EXPECT_NE(e.find("a metric without a name"), std::string::npos) << e;
}

TEST(TrainerHooks, LearningRateCallbackReplacesTheSchedule) {
  const proto::TrainConfig c = tiny(4);
  const auto lr = [](int64_t step) { return 1e-3 * double(step + 1) / 4; };
  const TrainReport hooked = Trainer(c, {.lr = lr}).run();
  const TrainReport plain = Trainer(c).run();  // constant 1e-3
  ASSERT_EQ(hooked.steps.size(), 4u);
  for (int64_t s = 0; s < 4; ++s) EXPECT_FLOAT_EQ(hooked.steps[s].lr, float(lr(s)));
  EXPECT_EQ(hooked.steps[0].loss, plain.steps[0].loss);  // before any update
  EXPECT_NE(hooked.steps[3].loss, plain.steps[3].loss);

  const TrainerHooks bad{.lr = [](int64_t) { return std::nan(""); }};
  EXPECT_THROW(Trainer(c, bad).run(), InputError);
}

// The reference's tokens, held in memory; `checked`: read checks the ids against vocab.
class VectorSource final : public TokenSource {
 public:
  explicit VectorSource(std::vector<int32_t> tokens, bool checked = true)
      : tokens_(std::move(tokens)), checked_(checked) {}
  int64_t size() const override { return int64_t(tokens_.size()); }
  std::string describe() const override { return "tokens in memory"; }
  void read(int64_t begin, int64_t count, int32_t* out, int64_t vocab) const override {
    PENG_INPUT_CHECK(begin >= 0 && begin + count <= size(), "read outside the tokens");
    for (int64_t i = 0; i < count; ++i) {
      PENG_INPUT_CHECK(!checked_ || tokens_[begin + i] < vocab, "token ", tokens_[begin + i],
                       " >= ", vocab);
      out[i] = tokens_[begin + i];
    }
  }

 private:
  std::vector<int32_t> tokens_;
  bool checked_;
};

TEST(TrainerHooks, OwnTokenSourceTrainsLikeTheShard) {
  proto::TrainConfig c = tiny(5);
  const TokenStream shard(c.data().train());
  std::vector<int32_t> tokens(shard.size());
  shard.read(0, shard.size(), tokens.data());
  const TrainReport from_file = Trainer(c).run();
  c.mutable_data()->clear_train();
  const TrainReport from_memory =
      Trainer(c, {.train_data = std::make_shared<VectorSource>(tokens)}).run();
  ASSERT_EQ(from_memory.steps.size(), from_file.steps.size());
  for (size_t s = 0; s < from_file.steps.size(); ++s) {
    EXPECT_EQ(from_memory.steps[s].loss, from_file.steps[s].loss) << "step " << s;
    EXPECT_EQ(from_memory.steps[s].grad_norm, from_file.steps[s].grad_norm) << "step " << s;
  }
  try {
    Trainer t(c);  // neither data.train nor a source
    FAIL() << "trained without data";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("data.train is not set"), std::string::npos);
  }
  // A source that does not check its ids: the batch rule's reader does.
  tokens[20] = 300;  // the vocabulary is 256
  const std::string e = testing::input_error_of(
      [&] { Trainer(c, {.train_data = std::make_shared<VectorSource>(tokens, false)}).run(); });
  EXPECT_NE(e.find("tokens in memory: token 300 at position 20 is outside the vocabulary (256)"),
            std::string::npos)
      << e;
}

TEST(ParseTrainArgs, FlagsSetsAndErrors) {
  const proto::TrainConfig c =
      parse_train_args({"--lr", "0.5", "--steps=7", "--sequence-parallel", "--quiet=false", "--set",
                        "optim.weight_decay=0.25"});
  EXPECT_FLOAT_EQ(c.optim().lr(), 0.5f);
  EXPECT_EQ(c.training().steps(), 7);
  EXPECT_TRUE(c.parallel().sequence_parallel());
  EXPECT_FALSE(c.logging().quiet());
  EXPECT_FLOAT_EQ(c.optim().weight_decay(), 0.25f);
  EXPECT_EQ(c.parallel().pp_schedule(), default_train_config().parallel().pp_schedule());
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"--no-such-flag", "1"}, {"--lr"}, {"a.pbtxt", "b.pbtxt"}}) {
    EXPECT_THROW(parse_train_args(bad), InputError) << bad[0];
  }
}

}  // namespace
}  // namespace peng
