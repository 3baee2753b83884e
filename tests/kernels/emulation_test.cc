// The CUDA emulation itself (tests/cuda_emu): coordinates, block barriers, shared memory,
// warp shuffles, and a deadlock reported instead of a hang.
#include "tests/cuda_emu/emu.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <vector>

#include "peng/core/cuda/kernels/common.cuh"

namespace peng {
namespace {

// Each block reverses its slice through shared memory: needs the barrier to be real.
template <class T>
__global__ void reverse_kernel(const T* in, T* out) {
  __shared__ T tile[128];
  const int base = blockIdx.x * blockDim.x;
  tile[threadIdx.x] = in[base + threadIdx.x];
  __syncthreads();
  out[base + threadIdx.x] = tile[blockDim.x - 1 - threadIdx.x];
}

TEST(CudaEmulation, SharedMemoryAndBarriers) {
  std::vector<int> in(3 * 128), out(in.size(), -1);
  for (size_t i = 0; i < in.size(); ++i) in[i] = int(i);
  emu::Launch launch;
  launch(dim3(3), dim3(128), reverse_kernel<int>, in.data(), out.data());
  for (int b = 0; b < 3; ++b) {
    for (int t = 0; t < 128; ++t) EXPECT_EQ(out[size_t(b * 128 + t)], b * 128 + 127 - t);
  }
}

template <class T = float>
__global__ void shuffle_kernel(float* xor_sum, float* down, float* up, float* bsum) {
  const float v = float(threadIdx.x + blockDim.x * blockIdx.x);
  xor_sum[threadIdx.x] = cuda::kernels::warp_sum(v);
  down[threadIdx.x] = __shfl_down_sync(0xffffffffu, v, 3);
  up[threadIdx.x] = __shfl_up_sync(0xffffffffu, v, 5);
  bsum[threadIdx.x] = cuda::kernels::block_sum(v);
}

TEST(CudaEmulation, WarpShufflesAndBlockSum) {
  std::vector<float> xs(96), down(96), up(96), bsum(96);
  emu::Launch launch;
  launch(dim3(1), dim3(96), shuffle_kernel<float>, xs.data(), down.data(), up.data(), bsum.data());
  for (int t = 0; t < 96; ++t) {
    const int warp = t / 32, lane = t % 32;
    EXPECT_EQ(xs[size_t(t)], float(32 * 32 * warp + 31 * 16));
    EXPECT_EQ(down[size_t(t)], float(lane + 3 < 32 ? t + 3 : t));
    EXPECT_EQ(up[size_t(t)], float(lane >= 5 ? t - 5 : t));
    EXPECT_EQ(bsum[size_t(t)], float(95 * 96 / 2));
  }
}

template <class T = int>
__global__ void divergent_barrier_kernel(T* out) {
  // Half of warp 0 waits for the block, the other half for its warp: neither barrier opens.
  if (threadIdx.x >= 16 && threadIdx.x < 32) {
    __syncwarp();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

TEST(CudaEmulation, DivergentBarrierIsADeadlockNotAHang) {
  std::vector<int> out(64);
  emu::Launch launch;
  EXPECT_THROW(launch(dim3(1), dim3(64), divergent_barrier_kernel<int>, out.data()),
               std::logic_error);
}

template <class T = int>
__global__ void early_exit_kernel(T* out) {
  if (threadIdx.x % 2) return;  // exited threads no longer count at the barrier
  __syncthreads();
  out[threadIdx.x] = 7;
}

TEST(CudaEmulation, ExitedThreadsLeaveBarriers) {
  std::vector<int> out(64, 0);
  emu::Launch launch;
  launch(dim3(1), dim3(64), early_exit_kernel<int>, out.data());
  for (int t = 0; t < 64; ++t) EXPECT_EQ(out[size_t(t)], t % 2 ? 0 : 7);
}

TEST(CudaEmulation, PartialWarpsAreRefused) {
  std::vector<int> out(64);
  emu::Launch launch;
  EXPECT_THROW(launch(dim3(1), dim3(40), early_exit_kernel<int>, out.data()), std::logic_error);
}

}  // namespace
}  // namespace peng
