// The memory planner (launch/memory_plan.h) against what peng allocates: each state term by
// hand, the activations a model keeps after a forward for every family and recompute policy,
// the pipeline's micro-batches in flight, the trainer's measured state bytes under every
// ZeRO stage, and the start-up lines of each pipeline rank.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "peng/core/backend.h"
#include "peng/launch/memory_plan.h"
#include "peng/models/decoder/decoder.h"
#include "peng/models/registry.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

using testing::joined;

TEST(StateBytes, EachZeroStageByHand) {
  // 1001 parameters over dp 4: shards of ceil(1001 / 4) = 251.
  const StateBytes z0 = state_bytes(1001, 4, 0), z1 = state_bytes(1001, 4, 1);
  const StateBytes z2 = state_bytes(1001, 4, 2), z3 = state_bytes(1001, 4, 3);
  EXPECT_EQ(z0.values, 4004);
  EXPECT_EQ(z0.grads, 4004);
  EXPECT_EQ(z0.optimizer, 8008);
  EXPECT_EQ(z1.values, 4004);
  EXPECT_EQ(z1.grads, 4004 + 1004);
  EXPECT_EQ(z1.optimizer, 2008);
  EXPECT_EQ(z2.values, 4004);
  EXPECT_EQ(z2.grads, 1004);
  EXPECT_EQ(z2.optimizer, 2008);
  EXPECT_EQ(z3.values, 1004);
  EXPECT_EQ(z3.grads, 1004);
  EXPECT_EQ(z3.optimizer, 2008);
  EXPECT_EQ(state_bytes(1001, 1, 3).total(), 16016);
}

TEST(InFlightChunks, OneFOneBHoldsAtMostItsWarmUp) {
  // 1F1B over 4 stages and 8 micro-batches: stage r holds pp - r forwards at most.
  const Schedule s = make_schedule(ScheduleKind::k1F1B, 4, 1, 8);
  for (int r = 0; r < 4; ++r) EXPECT_EQ(in_flight_chunks(s, r), 4 - r) << r;
  const Schedule g = make_schedule(ScheduleKind::kGPipe, 2, 1, 8);
  EXPECT_EQ(in_flight_chunks(g, 0), 8);
  EXPECT_EQ(in_flight_chunks({}, 0), 1);
}

DecoderConfig tiny(const std::string& family) {
  DecoderConfig c = model_family(family).custom();
  c.n_layer = 3;
  c.n_embd = 32;
  c.n_head = 4;
  c.n_kv_head = family == "gpt2" ? 4 : 2;
  c.head_dim = 8;
  c.ffn_hidden = family == "gpt2" ? 128 : 48;
  c.vocab_size = 200;
  c.max_seq_len = 16;
  model_family(c.family).complete(c);
  return c;
}

// The activations a model keeps after a forward with targets are the prediction's.
TEST(ActivationBytes, PredictionMatchesWhatTheModelKeeps) {
  const std::vector<RecomputePolicy> policies = {{},
                                                 {.full = true},
                                                 {.core_attn = true},
                                                 {.mlp_act = true},
                                                 {.norm = true},
                                                 {.core_attn = true, .mlp_act = true, .norm = true},
                                                 {.full = true, .layers = 1}};
  for (const std::string family : {"gpt2", "llama", "qwen3"}) {
    const DecoderConfig c = tiny(family);
    for (const RecomputePolicy& policy : policies) {
      DecoderModel m(c, cpu_backend());
      m.init_random(1);
      m.set_recompute(policy);
      const int64_t B = 2, T = 16;
      Tensor x = Tensor::empty({B, T}, DType::kI32), y = Tensor::empty({B, T}, DType::kI32);
      std::mt19937 gen(3);
      for (int64_t i = 0; i < B * T; ++i) {
        x.data<int32_t>()[i] = int32_t(gen() % 200);
        y.data<int32_t>()[i] = int32_t(gen() % 200);
      }
      m.forward(x, y);
      const int64_t predicted =
          chunk_activation_bytes(c, 0, c.n_layer, {.batch = B, .seq = T}, policy, true, true);
      EXPECT_NEAR(double(predicted), double(m.kept_activation_bytes()),
                  0.02 * double(m.kept_activation_bytes()))
          << family << " " << describe(policy);
    }
  }
}

// The trainer's measured state bytes (metrics JSONL) are the prediction's under every ZeRO
// stage (within the buckets' padding), and ZeRO 3 keeps a quarter of ZeRO 0's at dp 4.
TEST(StateBytes, TrainerAllocatesThePrediction) {
  const testing::ReferenceRun ref = testing::load_reference_run("llama-tiny");
  testing::TempDir tmp;
  int64_t measured[4] = {};
  for (int zero = 0; zero <= 3; ++zero) {
    const auto jsonl = tmp / ("z" + std::to_string(zero) + ".jsonl");
    const testing::CommandResult r =
        testing::run_mpi_peng(4, joined(joined({"train"}, ref.train_args(1)),
                                        {"--dp", "4", "--zero", std::to_string(zero), "--quiet",
                                         "--metrics-jsonl", jsonl.string()}));
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    const nlohmann::json j = nlohmann::json::parse(
        testing::read_file(jsonl).substr(0, testing::read_file(jsonl).find('\n')));
    measured[zero] = j["state_bytes"];
    EXPECT_EQ(j["state_bytes_predicted"], state_bytes(measured[0] / 16, 4, zero).total());
    const double act = j["activation_bytes"], act_predicted = j["activation_bytes_predicted"];
    EXPECT_NEAR(act, act_predicted, 0.02 * act_predicted);
    EXPECT_EQ(j.contains("zero_unit_peak_bytes"), zero >= 2);
  }
  // llama-tiny's parameter count on one rank: what ZeRO 0 holds, 16 bytes each.
  const int64_t n = measured[0] / 16;
  ASSERT_EQ(measured[0], state_bytes(n, 4, 0).total());
  for (int zero = 1; zero <= 3; ++zero) {
    const int64_t predicted = state_bytes(n, 4, zero).total();
    EXPECT_GE(measured[zero], predicted) << zero;  // padding only adds
    EXPECT_LE(measured[zero], predicted + 16 * 4 * 64) << zero;
  }
  EXPECT_NEAR(double(measured[3]), double(measured[0]) / 4, 0.01 * double(measured[0]));
}

// Under a pipeline the most activations a rank keeps at once are its stash's peak: the first
// stage's under 1F1B holds pp micro-batches, under GPipe all of them; the metrics give the
// measurement beside the start-up prediction (its largest chunk x chunks in flight).
TEST(ActivationBytes, PipelineStashMatchesThePrediction) {
  const testing::ReferenceRun ref = testing::load_reference_run("llama-deep4");
  for (const std::vector<std::string>& flags : std::vector<std::vector<std::string>>{
           {"--pp", "2", "--micro-batch-size", "2"},
           {"--pp", "2", "--pp-schedule", "gpipe", "--micro-batch-size", "2", "--recompute",
            "full"},
           {"--pp", "2", "--pp-schedule", "interleaved", "--virtual-stages", "2",
            "--micro-batch-size", "2"}}) {
    testing::TempDir tmp;
    const testing::CommandResult r = testing::run_mpi_peng(
        2, joined(joined({"train"}, ref.train_args(1)),
                  joined(flags, {"--quiet", "--metrics-jsonl", (tmp / "m.jsonl").string()})));
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    const std::string text = testing::read_file(tmp / "m.jsonl");
    const nlohmann::json j = nlohmann::json::parse(text.substr(0, text.find('\n')));
    const double measured = j["activation_bytes"], predicted = j["activation_bytes_predicted"];
    EXPECT_GT(measured, 0);
    EXPECT_NEAR(measured, predicted, 0.02 * predicted) << testing::case_name("", 2, flags);
  }
}

// Under pipeline parallelism the start-up lines give each pipeline rank's prediction: the
// first stage's 1F1B holds pp micro-batches in flight, the last one.
TEST(StartupLines, OnePredictionPerPipelineRank) {
  const testing::ReferenceRun ref = testing::load_reference_run("llama-deep4");
  const testing::CommandResult r =
      testing::run_mpi_peng(2, joined(joined({"train"}, ref.train_args(1)),
                                      {"--pp", "2", "--micro-batch-size", "2", "--quiet"}));
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_NE(r.stdout_text.find("memory per rank (predicted), pipeline rank 0: values"),
            std::string::npos)
      << r.stdout_text;
  EXPECT_NE(r.stdout_text.find("x 2 in flight)\nmemory per rank (predicted), pipeline rank 1: "),
            std::string::npos)
      << r.stdout_text;
  EXPECT_NE(r.stdout_text.find("x 1 in flight)"), std::string::npos) << r.stdout_text;
}

}  // namespace
}  // namespace peng
