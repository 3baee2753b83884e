// A test-only emulation of the CUDA execution model, so that the bodies of peng's own
// kernels (core/cuda/kernels/*.cuh) run on the CPU in CI, where there is no GPU.
//
// What it provides, with CUDA's semantics:
//   - grid and blocks: `launch(grid, block, kernel, args...)` runs every block of the grid,
//     one after another; the threads of a block are fibers (ucontext), so `__syncthreads()`
//     suspends a thread until all live threads of its block arrive;
//   - threadIdx / blockIdx / blockDim / gridDim of the running fiber;
//   - `__shared__` variables: one instance shared by all threads of the running block (blocks
//     run one at a time, so a function-local static is exactly that);
//   - warp shuffles (__shfl_sync, __shfl_xor_sync, __shfl_down_sync, __shfl_up_sync) and
//     __syncwarp over warps of 32 lanes (a block's size must be a multiple of 32 — peng's
//     kernels launch whole warps);
//   - atomics (atomicAdd, atomicMax on integers) — trivially atomic, fibers never run at once;
//   - device math that glibc lacks (rsqrtf, __expf, __logf, __fdividef, __ldg) and the
//     bf16 type of cuda_bf16.h, which compiles as host C++.
// A thread stuck at a barrier that the other threads never reach (a __syncthreads in
// divergent code) is reported as a deadlock instead of hanging.
//
// Include this header before any kernel header. Not for production: the real kernels are
// compiled by nvcc in core/cuda/ops/*.cu.
#pragma once

#define PENG_CUDA_EMULATION 1

#include <cuda_bf16.h>
#include <vector_types.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <type_traits>
#include <vector>

// host_defines.h makes these annotations empty for a host compiler; shared memory needs one
// instance per block instead of one per thread.
#undef __shared__
#define __shared__ static

namespace peng::emu {

// The coordinates of the fiber that is running now.
struct ThreadCoords {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
};
const ThreadCoords& coords();

// Runs body() once per thread of every block (see the file comment).
void run_grid(dim3 grid, dim3 block, const std::function<void()>& body);

// Suspends the running thread until every live thread of its block / warp arrives.
void sync_block();
void sync_warp();
// Exchanges up to 16 bytes among the running thread's warp: every lane deposits `value`,
// then reads lane `src`'s deposit into `out` (a lane out of range reads its own).
void warp_exchange(const void* value, size_t nbytes, int src, void* out);
int lane_id();

// Scratch memory of a driver (the Launch concept's `scratch<T>(n)`), freed with the Launch.
class Launch {
 public:
  template <class... Params, class... Args>
  void operator()(dim3 grid, dim3 block, void (*kernel)(Params...), Args... args) {
    ++launches;
    if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
    std::function<void()> body = [&] { kernel(Params(args)...); };
    run_grid(grid, block, body);
  }
  template <class T>
  T* scratch(size_t n) {
    // Poisoned (NaN bytes), so a kernel that reads scratch it did not write fails the test.
    buffers_.emplace_back(std::make_unique<unsigned char[]>(n * sizeof(T) + 1));
    std::memset(buffers_.back().get(), 0xff, n * sizeof(T) + 1);
    return reinterpret_cast<T*>(buffers_.back().get());
  }
  int launches = 0;

 private:
  std::vector<std::unique_ptr<unsigned char[]>> buffers_;
};

}  // namespace peng::emu

#define threadIdx (::peng::emu::coords().thread_idx)
#define blockIdx (::peng::emu::coords().block_idx)
#define blockDim (::peng::emu::coords().block_dim)
#define gridDim (::peng::emu::coords().grid_dim)

inline void __syncthreads() { ::peng::emu::sync_block(); }
inline void __syncwarp(unsigned = 0xffffffffu) { ::peng::emu::sync_warp(); }

template <class T>
T __shfl_sync(unsigned, T v, int src, int width = 32) {
  static_assert(sizeof(T) <= 16);
  const int lane = ::peng::emu::lane_id();
  T out;
  ::peng::emu::warp_exchange(&v, sizeof(T), (lane / width) * width + src % width, &out);
  return out;
}
template <class T>
T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  const int lane = ::peng::emu::lane_id();
  const int src = lane ^ mask;
  T out;
  ::peng::emu::warp_exchange(&v, sizeof(T), src / width == lane / width ? src : lane, &out);
  return out;
}
template <class T>
T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  const int lane = ::peng::emu::lane_id();
  const int src = lane + int(delta);
  T out;
  ::peng::emu::warp_exchange(&v, sizeof(T), src / width == lane / width ? src : lane, &out);
  return out;
}
template <class T>
T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
  const int lane = ::peng::emu::lane_id();
  const int src = lane - int(delta);
  T out;
  ::peng::emu::warp_exchange(&v, sizeof(T), src >= 0 && src / width == lane / width ? src : lane,
                             &out);
  return out;
}

template <class T>
T atomicAdd(T* p, T v) {
  T old = *p;
  *p = old + v;
  return old;
}
template <class T>
T atomicMax(T* p, T v) {
  T old = *p;
  if (v > old) *p = v;
  return old;
}

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
template <class T>
T __ldg(const T* p) {
  return *p;
}
