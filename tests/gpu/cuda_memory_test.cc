// CUDA memory layer: round trips through device memory, the stream-ordered caching
// allocator's counters, pinned memory, events. Skips without a GPU.
#include "peng/core/cuda/memory.h"

#include <gtest/gtest.h>

#include "peng/core/tensor.h"

namespace peng {
namespace {

TEST(CudaMemory, RoundTripAndZero) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  Tensor h = Tensor::empty({1000, 3});
  for (int64_t i = 0; i < h.numel(); ++i) h.data<float>()[i] = float(i) * 0.5f;
  Tensor d = h.to(Device::cuda(0));
  EXPECT_TRUE(d.device().is_cuda());
  Tensor back = d.to(Device::cpu());
  for (int64_t i = 0; i < h.numel(); ++i) ASSERT_EQ(back.data<float>()[i], float(i) * 0.5f);
  // Zero an odd-sized, unaligned view: only its bytes change.
  Tensor part = d.flat_view(1, {2999 - 1});
  part.zero();
  back = d.to(Device::cpu());
  EXPECT_EQ(back.data<float>()[0], 0.0f);
  EXPECT_EQ(back.data<float>()[1], 0.0f);
  EXPECT_EQ(back.data<float>()[2998], 0.0f);
  EXPECT_EQ(back.data<float>()[2999], 2999 * 0.5f);
}

TEST(CudaMemory, BuildKnowsWhetherItHasCuda) {
  if (!cuda::compiled_with_cuda()) {
    EXPECT_THROW(Tensor::empty({4}, DType::kF32, Device::cuda(0)), Error);
    EXPECT_THROW(cuda::Event(0), Error);
    EXPECT_THROW(cuda::allocate_host_pinned(64), Error);
    EXPECT_THROW(cuda::stream(0), Error);
    EXPECT_EQ(cuda::memory_stats(0).peak, 0u);
  } else if (cuda::device_count() == 0) {
    // The toolkit without a device: a clear error, no crash.
    EXPECT_THROW(Tensor::empty({4}, DType::kF32, Device::cuda(0)), Error);
  } else {
    EXPECT_THROW(Tensor::empty({4}, DType::kF32, Device::cuda(cuda::device_count())), Error);
  }
}

TEST(CudaMemory, AllocatorCountsBytesInUseAndThePeak) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  cuda::synchronize(0);
  cuda::reset_peak(0);
  const cuda::MemoryStats before = cuda::memory_stats(0);
  EXPECT_EQ(before.peak, before.in_use);
  {
    Tensor a = Tensor::empty({1 << 20});  // 4 MiB
    Tensor b = Tensor::empty({3, 1001}, DType::kF64, Device::cuda(0));
    Tensor c = Tensor::empty({1 << 18}, DType::kF32, Device::cuda(0));  // 1 MiB
    Tensor d = a.to(Device::cuda(0));
    const cuda::MemoryStats during = cuda::memory_stats(0);
    EXPECT_EQ(during.in_use, before.in_use + b.nbytes() + c.nbytes() + d.nbytes());
    EXPECT_EQ(during.peak, during.in_use);
    EXPECT_GE(during.reserved, during.in_use);
  }
  const cuda::MemoryStats after = cuda::memory_stats(0);
  EXPECT_EQ(after.in_use, before.in_use);
  EXPECT_EQ(after.peak, before.in_use + 3 * 1001 * 8 + (1u << 20) + (4u << 20));
  cuda::reset_peak(0);
  EXPECT_EQ(cuda::memory_stats(0).peak, after.in_use);
}

TEST(CudaMemory, FreedMemoryStaysCachedInThePool) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const size_t big = size_t(256) << 20;
  { Tensor t = Tensor::empty({int64_t(big / 4)}, DType::kF32, Device::cuda(0)); }
  cuda::synchronize(0);  // a synchronization would return memory above the release threshold
  const size_t reserved = cuda::memory_stats(0).reserved;
  EXPECT_GE(reserved, big);
  for (int i = 0; i < 10; ++i) {  // served from the pool: nothing new from the driver
    Tensor t = Tensor::empty({int64_t(big / 4)}, DType::kF32, Device::cuda(0));
    t.zero();
  }
  cuda::synchronize(0);
  EXPECT_EQ(cuda::memory_stats(0).reserved, reserved);
}

TEST(CudaMemory, StreamOrderedCopiesRoundTripThroughPinnedMemory) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const int64_t n = 3 * 1000 * 1000 + 7;
  const size_t bytes = size_t(n) * sizeof(float);
  cuda::PinnedBuffer up(bytes), down(bytes);
  float* src = static_cast<float*>(up.data());
  for (int64_t i = 0; i < n; ++i) src[i] = float(i % 1013) - 0.5f;
  Tensor d = Tensor::empty({n}, DType::kF32, Device::cuda(0));
  cuda::copy_async(d.raw_data(), src, bytes, cuda::CopyKind::kHostToDevice, 0);
  Tensor e = d.clone();  // device to device, queued after the upload
  d.zero();              // queued after the clone: e keeps the values
  cuda::copy_async(down.data(), e.raw_data(), bytes, cuda::CopyKind::kDeviceToHost, 0);
  cuda::Event done(0, /*timing=*/false);
  done.record();
  done.synchronize();
  EXPECT_TRUE(done.done());
  const float* back = static_cast<const float*>(down.data());
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(back[i], src[i]) << i;
  // The synchronous copy from pageable memory sees the queued zero fill.
  Tensor host = d.to(Device::cpu());
  for (int64_t i = 0; i < n; i += 9973) ASSERT_EQ(host.data<float>()[i], 0.0f);
}

TEST(CudaMemory, EventsTimeTheGpuWork) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  Tensor t = Tensor::empty({int64_t(64) << 20}, DType::kF32, Device::cuda(0));  // 256 MiB
  cuda::Event start(0), end(0);
  start.record();
  for (int i = 0; i < 20; ++i) t.zero();
  end.record();
  end.synchronize();
  const double s = cuda::elapsed_seconds(start, end);
  EXPECT_GT(s, 0.0);
  EXPECT_LT(s, 10.0);
  EXPECT_FALSE(cuda::device_name(0).empty());
}

}  // namespace
}  // namespace peng
