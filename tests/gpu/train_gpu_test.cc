// `peng train --device cuda` against the numerics contract (label gpu; skips without a GPU):
// the PyTorch reference cases train on the GPU in fp32 within DESIGN.md's tolerances (1e-4
// loss, 1e-3 gradient norm) at every step; two runs from one seed give bit-identical losses;
// a checkpoint saved on the GPU resumes on the CPU backend and continues on the reference.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "peng/core/cuda/memory.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using testing::joined;

#define PENG_REQUIRE_GPU()                                           \
  do {                                                               \
    if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

const std::vector<std::string> kGpu = {"--device", "cuda"};

using testing::raw_step_metrics;

class GpuReference : public ::testing::TestWithParam<std::string> {};

TEST_P(GpuReference, TrainsOnTheGpuWithinTheContract) {
  PENG_REQUIRE_GPU();
  const testing::ReferenceRun ref = testing::load_reference_run(GetParam());
  testing::TempDir tmp;
  const testing::CommandResult r = testing::run_peng(
      joined(joined({"train"}, ref.train_args()),
             joined(kGpu, {"--quiet", "--metrics-jsonl", (tmp / "m.jsonl").string()})));
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  std::vector<double> loss, norm;
  testing::read_metrics_jsonl(tmp / "m.jsonl", loss, norm);
  testing::expect_matches_reference(ref, loss, norm);
}

INSTANTIATE_TEST_SUITE_P(Cases, GpuReference,
                         ::testing::Values("gpt2-tiny", "gpt2-small-odd", "gpt2-deep4",
                                           "llama-tiny", "qwen2-odd", "qwen3-tiny", "llama-deep4"),
                         [](const auto& info) {
                           std::string n;
                           for (char ch : info.param) n += std::isalnum(ch) ? ch : '_';
                           return n;
                         });

TEST(GpuTraining, TwoRunsAreBitIdentical) {
  PENG_REQUIRE_GPU();
  const testing::ReferenceRun ref = testing::load_reference_run("qwen3-tiny");
  testing::TempDir tmp;
  for (const char* name : {"a.jsonl", "b.jsonl"}) {
    const testing::CommandResult r = testing::run_peng(
        joined(joined({"train"}, ref.train_args()),
               joined(kGpu, {"--quiet", "--metrics-jsonl", (tmp / name).string()})));
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  }
  const auto a = raw_step_metrics(tmp / "a.jsonl"), b = raw_step_metrics(tmp / "b.jsonl");
  ASSERT_EQ(a.size(), size_t(ref.steps));
  EXPECT_EQ(a, b);
}

TEST(GpuTraining, GpuCheckpointResumesOnTheCpu) {
  PENG_REQUIRE_GPU();
  for (const std::string name : {"llama-tiny", "gpt2-tiny"}) {
    const testing::ReferenceRun ref = testing::load_reference_run(name);
    testing::TempDir tmp;
    const fs::path dir = tmp / "ckpt";
    testing::CommandResult r =
        testing::run_peng(joined(joined({"train"}, ref.train_args(5)),
                                 joined(kGpu, {"--quiet", "--checkpoint-dir", dir.string()})));
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    const fs::path jsonl = tmp / "resumed.jsonl";
    r = testing::run_peng(joined(joined({"train"}, ref.train_args()),
                                 {"--device", "cpu", "--quiet", "--resume", dir.string(),
                                  "--metrics-jsonl", jsonl.string()}));
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    const auto steps = raw_step_metrics(jsonl);
    ASSERT_EQ(steps.size(), size_t(ref.steps - 5)) << name;
    for (const auto& [s, m] : steps) {
      const double loss = std::stod(m.first), norm = std::stod(m.second);
      EXPECT_NEAR(loss, ref.loss[size_t(s)], 1e-4 * ref.loss[size_t(s)]) << name << " " << s;
      EXPECT_NEAR(norm, ref.grad_norm[size_t(s)], 1e-3 * ref.grad_norm[size_t(s)])
          << name << " " << s;
    }
  }
}

}  // namespace
}  // namespace peng
