// --device and --precision: which device a rank chooses (every branch, with the build's and
// node's facts given), and through the `peng` command line the refusals (one exact `error:`
// line, non-zero exit, nothing trained) and `auto` falling back to the CPU on a machine
// without a GPU, training exactly as --device cpu does.
#include "peng/launch/device.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "peng/core/cuda/memory.h"
#include "peng/core/error.h"
#include "peng/launch/config.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using testing::run_peng;
using testing::TempDir;

const fs::path kTiny = testing::reference_dir() / "gpt2-tiny";

LaunchEnv env(int rank, int world, int local) {
  return {.rank = rank, .world_size = world, .local_rank = local, .launcher = "openmpi"};
}

std::string refusal(const std::string& setting, const LaunchEnv& e, const DeviceFacts& f) {
  try {
    choose_device(setting, e, f);
  } catch (const InputError& err) {
    return err.what();
  }
  return "";
}

TEST(ChooseDevice, CpuAndAuto) {
  const DeviceFacts none{.compiled_with_cuda = false, .device_count = 0};
  const DeviceFacts no_gpu{.compiled_with_cuda = true, .device_count = 0};
  const DeviceFacts two{.compiled_with_cuda = true, .device_count = 2};
  EXPECT_EQ(choose_device("cpu", env(0, 1, 0), two), Device::cpu());
  EXPECT_EQ(choose_device("cpu", env(3, 4, 3), none), Device::cpu());
  EXPECT_EQ(choose_device("auto", env(0, 1, 0), none), Device::cpu());
  EXPECT_EQ(choose_device("auto", env(0, 4, 0), no_gpu), Device::cpu());  // any world size
  EXPECT_EQ(choose_device("auto", env(0, 1, 0), two), Device::cuda(0));
  EXPECT_EQ(choose_device("cuda", env(0, 1, 1), two), Device::cuda(1));  // the local rank's GPU
  EXPECT_THROW(choose_device("tpu", env(0, 1, 0), two), InputError);
}

TEST(ChooseDevice, RefusalsNameTheFlagAndWhy) {
  const DeviceFacts none{.compiled_with_cuda = false, .device_count = 0};
  const DeviceFacts no_gpu{.compiled_with_cuda = true, .device_count = 0};
  EXPECT_EQ(refusal("cuda", env(0, 1, 0), none)
                .rfind("--device cuda: this peng build has no CUDA backend", 0),
            0u)
      << refusal("cuda", env(0, 1, 0), none);
  EXPECT_EQ(refusal("cuda", env(0, 1, 0), no_gpu)
                .rfind("--device cuda: no CUDA device is visible to rank 0", 0),
            0u);
}

TEST(ChooseDevice, RanksShareTheNodesGpusRoundRobin) {
  const DeviceFacts one{.compiled_with_cuda = true, .device_count = 1};
  const DeviceFacts two{.compiled_with_cuda = true, .device_count = 2};
  EXPECT_EQ(choose_device("cuda", env(1, 2, 1), two), Device::cuda(1));  // one GPU per rank
  EXPECT_EQ(choose_device("auto", env(5, 8, 2), two), Device::cuda(0));
  EXPECT_EQ(choose_device("cuda", env(3, 4, 3), two), Device::cuda(1));
  for (int r = 0; r < 8; ++r) EXPECT_EQ(choose_device("cuda", env(r, 8, r), one), Device::cuda(0));
}

TEST(DeviceConfig, ValidationAndDefaults) {
  proto::TrainConfig c = default_train_config();
  c.mutable_data()->set_train("x.bin");
  EXPECT_EQ(c.training().device(), "cpu");
  EXPECT_EQ(c.training().precision(), "fp32");
  validate_train_config(c);
  proto::TrainConfig empty;  // a config not built from the defaults
  EXPECT_EQ(device_setting(empty), "cpu");
  EXPECT_EQ(precision_setting(empty), "fp32");
  auto message = [&](const std::string& device, const std::string& precision) -> std::string {
    proto::TrainConfig k = c;
    k.mutable_training()->set_device(device);
    k.mutable_training()->set_precision(precision);
    try {
      validate_train_config(k);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(message("auto", "fp32"), "");
  EXPECT_EQ(message("cuda", "fp32"), "");  // the device itself is resolved at start
  EXPECT_EQ(message("gpu", "fp32"),
            "training.device (--device) must be cpu, cuda or auto, got \"gpu\"");
  EXPECT_EQ(message("cpu", "fp16"),
            "training.precision (--precision) must be fp32 or bf16, got \"fp16\"");
  EXPECT_EQ(message("cpu", "bf16").rfind("--precision bf16 needs a GPU", 0), 0u);
  EXPECT_EQ(message("cuda", "bf16").rfind("--precision bf16 is not available yet", 0), 0u);
  EXPECT_EQ(message("auto", "bf16").rfind("--precision bf16 is not available yet", 0), 0u);
}

std::vector<std::string> tiny_run(const fs::path& metrics, std::vector<std::string> extra) {
  std::vector<std::string> args = {"train",
                                   "--init-from",
                                   kTiny.string(),
                                   "--data",
                                   (kTiny / "tokens.bin").string(),
                                   "--batch-size",
                                   "4",
                                   "--seq-len",
                                   "16",
                                   "--steps",
                                   "3",
                                   "--lr",
                                   "1e-3",
                                   "--quiet",
                                   "--metrics-jsonl",
                                   metrics.string()};
  return testing::joined(args, extra);
}

// Exactly `line` on stderr, a non-zero exit, and nothing trained.
void expect_refused(const testing::CommandResult& r, const fs::path& metrics,
                    const std::string& line) {
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.stderr_text, line + "\n");
  EXPECT_EQ(r.stdout_text.find("done:"), std::string::npos) << r.stdout_text;
  EXPECT_FALSE(fs::exists(metrics));
}

TEST(DeviceCli, CudaWithoutAGpuIsOneErrorLine) {
  if (cuda::device_count() > 0) GTEST_SKIP() << "this machine has a CUDA device";
  TempDir tmp;
  const fs::path metrics = tmp / "m.jsonl";
  const std::string why =
      cuda::compiled_with_cuda()
          ? "no CUDA device is visible to rank 0 (the CUDA driver reports none: no GPU, no "
            "driver, or CUDA_VISIBLE_DEVICES hides them); train on the CPU with --device cpu "
            "or auto"
          : "this peng build has no CUDA backend (it was configured without the CUDA toolkit; "
            "rebuild with -DPENG_CUDA=ON where /usr/local/cuda exists), so it trains on the CPU "
            "only (--device cpu)";
  expect_refused(run_peng(tiny_run(metrics, {"--device", "cuda"})), metrics,
                 "error: --device cuda: " + why);
}

TEST(DeviceCli, BadValuesAndBf16AreOneErrorLine) {
  TempDir tmp;
  const fs::path metrics = tmp / "m.jsonl";
  expect_refused(run_peng(tiny_run(metrics, {"--device", "tpu"})), metrics,
                 "error: training.device (--device) must be cpu, cuda or auto, got \"tpu\"");
  expect_refused(run_peng(tiny_run(metrics, {"--precision", "fp8"})), metrics,
                 "error: training.precision (--precision) must be fp32 or bf16, got \"fp8\"");
  expect_refused(run_peng(tiny_run(metrics, {"--precision", "bf16"})), metrics,
                 "error: --precision bf16 needs a GPU (--device cuda or auto): the CPU backend "
                 "computes in fp32 only (training.precision = bf16 with training.device = cpu)");
  expect_refused(
      run_peng(tiny_run(metrics, {"--device", "cuda", "--precision", "bf16"})), metrics,
      "error: --precision bf16 is not available yet: the CUDA backend's bf16 mixed-precision "
      "path is still being built; train with --precision fp32 (the exact mode)");
  // The config file and --set say the same.
  testing::write_file(tmp / "c.pbtxt", "training { device: \"tpu\" }\n");
  expect_refused(
      run_peng(testing::joined(
          {"train", (tmp / "c.pbtxt").string()},
          {"--data", (kTiny / "tokens.bin").string(), "--metrics-jsonl", metrics.string()})),
      metrics, "error: training.device (--device) must be cpu, cuda or auto, got \"tpu\"");
  expect_refused(run_peng(tiny_run(metrics, {"--set", "training.precision=bf16"})), metrics,
                 "error: --precision bf16 needs a GPU (--device cuda or auto): the CPU backend "
                 "computes in fp32 only (training.precision = bf16 with training.device = cpu)");
}

TEST(DeviceCli, AutoWithoutAGpuTrainsOnTheCpuLikeCpu) {
  if (cuda::device_count() > 0) GTEST_SKIP() << "this machine has a CUDA device";
  TempDir tmp;
  auto cpu = run_peng(tiny_run(tmp / "cpu.jsonl", {"--device", "cpu"}));
  ASSERT_EQ(cpu.exit_code, 0) << cpu.stderr_text;
  testing::write_file(tmp / "c.pbtxt", "training { device: \"auto\" precision: \"fp32\" }\n");
  auto automatic = run_peng(
      testing::joined({"train", (tmp / "c.pbtxt").string()},
                      {"--init-from", kTiny.string(), "--data", (kTiny / "tokens.bin").string(),
                       "--batch-size", "4", "--seq-len", "16", "--steps", "3", "--lr", "1e-3",
                       "--metrics-jsonl", (tmp / "auto.jsonl").string()}));
  ASSERT_EQ(automatic.exit_code, 0) << automatic.stderr_text;
  EXPECT_NE(automatic.stdout_text.find("\ndevice: cpu | precision fp32\n"), std::string::npos)
      << automatic.stdout_text;
  std::vector<double> loss_cpu, norm_cpu, loss_auto, norm_auto;
  testing::read_metrics_jsonl(tmp / "cpu.jsonl", loss_cpu, norm_cpu);
  testing::read_metrics_jsonl(tmp / "auto.jsonl", loss_auto, norm_auto);
  ASSERT_EQ(loss_cpu.size(), 3u);
  EXPECT_EQ(loss_auto, loss_cpu);  // the same backend: bit for bit
  EXPECT_EQ(norm_auto, norm_cpu);
  // A CPU run has no device allocator to report.
  const std::string first_line = testing::read_file(tmp / "auto.jsonl").substr(0, 2000);
  EXPECT_EQ(first_line.find("device_mem_peak_bytes"), std::string::npos);
}

}  // namespace
}  // namespace peng
