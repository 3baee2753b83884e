// `peng train` and `peng export` end to end: validation, samples, export and re-import,
// and the Hugging Face round trip through the command line.
#include <gtest/gtest.h>

#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
const fs::path kTiny = testing::reference_dir() / "gpt2-tiny";

TEST(TrainCli, ValidationSamplesAndExport) {
  testing::TempDir tmp;
  const std::string data = (kTiny / "tokens.bin").string();
  auto r = testing::run_peng({"train",
                              "--data",
                              data,
                              "--val-data",
                              data,
                              "--n-layer",
                              "2",
                              "--n-head",
                              "2",
                              "--n-embd",
                              "32",
                              "--vocab-size",
                              "256",
                              "--seq-len",
                              "16",
                              "--batch-size",
                              "4",
                              "--steps",
                              "4",
                              "--val-every",
                              "2",
                              "--sample-every",
                              "2",
                              "--sample-tokens",
                              "8",
                              "--lr-schedule",
                              "cosine",
                              "--warmup-steps",
                              "1",
                              "--export-to",
                              (tmp / "out").string()});
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_NE(r.stdout_text.find("step 2 | val loss"), std::string::npos) << r.stdout_text;
  EXPECT_NE(r.stdout_text.find("sample at step 4"), std::string::npos) << r.stdout_text;
  EXPECT_NE(r.stdout_text.find("step 4/4 | loss"), std::string::npos) << r.stdout_text;
  EXPECT_NE(r.stdout_text.find("done: 4 steps"), std::string::npos) << r.stdout_text;
  ASSERT_TRUE(fs::exists(tmp / "out" / "model.safetensors"));
  // The exported model starts a new run.
  auto again =
      testing::run_peng({"train", "--init-from", (tmp / "out").string(), "--data", data,
                         "--seq-len", "16", "--batch-size", "4", "--steps", "1", "--quiet"});
  EXPECT_EQ(again.exit_code, 0) << again.stderr_text;
}

TEST(ExportCli, RoundTripIsBitExact) {
  testing::TempDir tmp;
  auto r =
      testing::run_peng({"export", "--init-from", kTiny.string(), "--to", (tmp / "f32").string()});
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_EQ(testing::read_file(tmp / "f32" / "model.safetensors"),
            testing::read_file(kTiny / "model.safetensors"));
  // bf16: export, import, export again gives the same bytes.
  ASSERT_EQ(testing::run_peng({"export", "--init-from", kTiny.string(), "--to",
                               (tmp / "bf16").string(), "--dtype", "bf16"})
                .exit_code,
            0);
  ASSERT_EQ(testing::run_peng({"export", "--init-from", (tmp / "bf16").string(), "--to",
                               (tmp / "bf16b").string(), "--dtype", "bf16"})
                .exit_code,
            0);
  EXPECT_EQ(testing::read_file(tmp / "bf16" / "model.safetensors"),
            testing::read_file(tmp / "bf16b" / "model.safetensors"));
  // A preset with a random init exports too, and the seed decides the weights.
  for (const char* name : {"s1", "s1b"}) {
    ASSERT_EQ(testing::run_peng({"export", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
                                 "--vocab-size", "100", "--seq-len", "8", "--seed", "1", "--to",
                                 (tmp / name).string()})
                  .exit_code,
              0);
  }
  EXPECT_EQ(testing::read_file(tmp / "s1" / "model.safetensors"),
            testing::read_file(tmp / "s1b" / "model.safetensors"));
}

}  // namespace
}  // namespace peng

namespace peng {
namespace {

TEST(ScheduleCli, PrintsAndChecksASchedule) {
  testing::CommandResult r =
      testing::run_peng({"schedule", "--pp", "2", "--micro-batches", "4", "--pp-schedule", "1f1b"});
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_NE(r.stdout_text.find("rank 0: F0 sA0 F1 sA1 rG0 B0 F2 sA2 rG1 B1 F3 sA3 rG2 B2 rG3 B3"),
            std::string::npos)
      << r.stdout_text;
  EXPECT_NE(r.stdout_text.find("check: ok"), std::string::npos) << r.stdout_text;
  EXPECT_NE(r.stdout_text.find("bubble with backward = 2 x forward: 0.200"), std::string::npos)
      << r.stdout_text;
  r = testing::run_peng({"schedule", "--pp", "4", "--micro-batches", "2"});
  EXPECT_EQ(r.exit_code, 1);
  ASSERT_EQ(testing::error_lines(r.stderr_text).size(), 1u) << r.stderr_text;
  EXPECT_NE(r.stderr_text.find("needs at least pp (4) micro-batches, got 2"), std::string::npos);
}

}  // namespace
}  // namespace peng
