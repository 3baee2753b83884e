// The trainer's device plumbing on a GPU: token batches staged through pinned memory onto the
// device, checkpoint state staged through pinned host memory both ways, and step phases
// timed by CUDA events. Skips without a GPU.
#include <gtest/gtest.h>

#include "peng/core/backend.h"
#include "peng/core/cuda/memory.h"
#include "peng/launch/batch_reader.h"
#include "peng/launch/checkpointing.h"
#include "peng/optim/adamw.h"
#include "peng/telemetry/phase_timer.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

const std::filesystem::path kTokens = testing::reference_dir() / "gpt2-tiny" / "tokens.bin";

TEST(DevicePlumbing, BatchesLandOnTheDeviceAsOnTheHost) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  TokenStream stream(kTokens.string());
  BatchReader host(stream, 8, 2, 3, 16, 256), gpu(stream, 8, 2, 3, 16, 256, Device::cuda(0));
  EXPECT_TRUE(gpu.x().device().is_cuda());
  std::vector<Tensor> xs, ys;  // every micro-batch queued before any is read back
  for (int64_t step = 0; step < 4; ++step) {
    for (int64_t k = 0; k < 2; ++k) {
      gpu.read(step, k);
      xs.push_back(gpu.x().clone());
      ys.push_back(gpu.y().clone());
    }
  }
  size_t i = 0;
  for (int64_t step = 0; step < 4; ++step) {
    for (int64_t k = 0; k < 2; ++k, ++i) {
      host.read(step, k);
      Tensor x = xs[i].to(Device::cpu()), y = ys[i].to(Device::cpu());
      for (int64_t j = 0; j < x.numel(); ++j) {
        ASSERT_EQ(x.data<int32_t>()[j], host.x().data<int32_t>()[j]) << step << " " << k;
        ASSERT_EQ(y.data<int32_t>()[j], host.y().data<int32_t>()[j]) << step << " " << k;
      }
    }
  }
}

TEST(DevicePlumbing, CheckpointStateStagesThroughPinnedMemory) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const Device gpu = Device::cuda(0);
  ParameterSet params(gpu);
  params.add("w", {5, 7});
  params.add("b", {7});
  params.finalize();
  AdamW opt(params, backend_for(gpu), {});
  const int64_t n = params.numel();
  auto fill = [&](Tensor& t, float base) {
    Tensor h = Tensor::empty({t.numel()});
    for (int64_t i = 0; i < t.numel(); ++i) h.data<float>()[i] = base + float(i);
    t.copy_from(h);
  };
  fill(params.flat_values(), 1000);
  fill(opt.exp_avg(), 2000);
  fill(opt.exp_avg_sq(), 3000);
  HostStaging staging(n, n);
  RankState state{
      .params = &params, .optimizer = &opt, .optim_spans = {{0, n, 0}}, .staging = &staging};
  stage_to_host(state);
  // The save regions read the staging: every value and moment, at its place.
  for (const ckpt::Region& r : save_regions(state)) {
    const float base = r.tensor.rfind("model/", 0) == 0              ? 1000
                       : r.tensor.rfind("optim/exp_avg_sq/", 0) == 0 ? 3000
                                                                     : 2000;
    const Parameter& p = params.get(r.tensor.substr(r.tensor.rfind('/') + 1));
    for (int64_t i = r.begin; i < r.end; ++i) {
      ASSERT_EQ(r.data[i - r.begin], base + float(p.offset + i)) << r.tensor;
    }
  }
  // A load writes the staging through its regions; stage_to_device puts it on the GPU.
  for (const ckpt::Region& r : load_regions(state)) {
    for (int64_t i = r.begin; i < r.end; ++i) r.data[i - r.begin] = -float(i) - 1;
  }
  stage_to_device(state);
  Tensor w = params.get("w").value.to(Device::cpu());
  EXPECT_EQ(w.data<float>()[0], -1.0f);
  EXPECT_EQ(w.data<float>()[34], -35.0f);
  Tensor m = opt.exp_avg().to(Device::cpu());
  EXPECT_EQ(m.data<float>()[n - 1], -7.0f);  // b's last moment: its index 6
}

TEST(DevicePlumbing, PhasesAreTimedByEvents) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  PhaseTimer timer(Device::cuda(0));
  EXPECT_TRUE(timer.on_gpu());
  Tensor t = Tensor::empty({int64_t(64) << 20}, DType::kF32, Device::cuda(0));
  double busy = 0, idle = 0;
  for (int round = 0; round < 2; ++round) {
    const double before = busy;
    timer.start();
    for (int i = 0; i < 20; ++i) t.zero();
    timer.lap(&busy);
    timer.lap(&idle);         // nothing queued in between: (almost) no GPU time
    timer.lap(nullptr);       // dropped
    EXPECT_EQ(busy, before);  // filled only by collect()
    timer.collect();
    EXPECT_GT(busy, before);
  }
  EXPECT_LT(idle, busy);
}

}  // namespace
}  // namespace peng
