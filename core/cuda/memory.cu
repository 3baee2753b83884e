// CUDA device memory layer (memory.h): the per-device stream, the stream-ordered caching
// allocator over CUDA memory pools, copies, zero fill, pinned host memory and events.
//
// Per device, created once on first use (std::call_once): a non-blocking stream and the
// device's default memory pool with its release threshold raised to "never", so memory
// freed with cudaFreeAsync stays in the pool and the next cudaMallocAsync of a similar size
// is served from it without the driver. Bytes in use and their peak are counted here (the
// pool's own used-memory counter includes its internal fragmentation and cannot be reset
// per run); the reserved bytes come from the pool. Sizes of live allocations are kept in a
// map so deallocate (which gets only the pointer) can count them off.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "peng/core/cuda/memory.h"
#include "peng/core/error.h"

namespace peng::cuda {

namespace {

void check(cudaError_t err, const char* what, int device) {
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so later calls do not report it again
    throw Error(
        detail::concat("CUDA ", what, " on device ", device, ": ", cudaGetErrorString(err)));
  }
}

// Makes `device` current for the calling thread.
void use_device(int device) { check(cudaSetDevice(device), "cudaSetDevice", device); }

struct DeviceState {
  std::once_flag once;
  cudaStream_t stream = nullptr;
  cudaMemPool_t pool = nullptr;
  std::atomic<size_t> in_use{0}, peak{0};
  std::mutex sizes_mutex;
  std::unordered_map<void*, size_t> sizes;  // live allocations
};

// Index-checked; the states live for the whole process (never destroyed: tensors freed by
// static destructors at exit may still reach deallocate).
DeviceState& state_of(int device) {
  static const int count = device_count();
  static DeviceState* states = new DeviceState[size_t(count > 0 ? count : 1)];
  if (device < 0 || device >= count) {
    throw Error(detail::concat("CUDA device ", device, " does not exist (", count,
                               " visible device", count == 1 ? "" : "s", ")"));
  }
  return states[device];
}

// The device's state with its stream and pool set up.
DeviceState& ready(int device) {
  DeviceState& s = state_of(device);
  std::call_once(s.once, [&] {
    use_device(device);
    check(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), "cudaStreamCreate", device);
    check(cudaDeviceGetDefaultMemPool(&s.pool, device), "cudaDeviceGetDefaultMemPool", device);
    uint64_t keep_all = UINT64_MAX;
    check(cudaMemPoolSetAttribute(s.pool, cudaMemPoolAttrReleaseThreshold, &keep_all),
          "cudaMemPoolSetAttribute(ReleaseThreshold)", device);
  });
  return s;
}

cudaMemcpyKind memcpy_kind(CopyKind kind) {
  switch (kind) {
    case CopyKind::kHostToDevice:
      return cudaMemcpyHostToDevice;
    case CopyKind::kDeviceToHost:
      return cudaMemcpyDeviceToHost;
    case CopyKind::kDeviceToDevice:
      break;
  }
  return cudaMemcpyDefault;  // device to device, also across devices (unified addressing)
}

}  // namespace

bool compiled_with_cuda() { return true; }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver / no device" error
    return 0;
  }
  return n;
}

std::string device_name(int device) {
  state_of(device);  // index check
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties", device);
  return prop.name;
}

void* allocate(size_t nbytes, int device) {
  if (nbytes == 0) return nullptr;
  DeviceState& s = ready(device);
  use_device(device);
  void* p = nullptr;
  const cudaError_t err = cudaMallocAsync(&p, nbytes, s.stream);
  if (err != cudaSuccess) {
    cudaGetLastError();
    uint64_t reserved = 0;
    cudaMemPoolGetAttribute(s.pool, cudaMemPoolAttrReservedMemCurrent, &reserved);
    throw Error(detail::concat("CUDA cudaMallocAsync(", nbytes, " bytes) on device ", device, ": ",
                               cudaGetErrorString(err), " (", s.in_use.load(),
                               " bytes in use by tensors, ", reserved, " reserved by the pool)"));
  }
  {
    std::lock_guard<std::mutex> lock(s.sizes_mutex);
    s.sizes[p] = nbytes;
  }
  const size_t now = s.in_use.fetch_add(nbytes) + nbytes;
  size_t peak = s.peak.load();
  while (now > peak && !s.peak.compare_exchange_weak(peak, now)) {
  }
  return p;
}

void deallocate(void* ptr, int device) noexcept {
  if (!ptr) return;
  try {
    DeviceState& s = ready(device);
    {
      std::lock_guard<std::mutex> lock(s.sizes_mutex);
      auto it = s.sizes.find(ptr);
      if (it != s.sizes.end()) {
        s.in_use.fetch_sub(it->second);
        s.sizes.erase(it);
      }
    }
    cudaSetDevice(device);
    // Errors here (a context already torn down at process exit) cannot be reported from a
    // destructor; clear them so they do not surface at an unrelated call.
    if (cudaFreeAsync(ptr, s.stream) != cudaSuccess) cudaGetLastError();
  } catch (...) {
  }
}

void copy(void* dst, const void* src, size_t nbytes, CopyKind kind, int device) {
  if (nbytes == 0) return;
  copy_async(dst, src, nbytes, kind, device);
  if (kind != CopyKind::kDeviceToDevice) synchronize(device);
}

void copy_async(void* dst, const void* src, size_t nbytes, CopyKind kind, int device) {
  if (nbytes == 0) return;
  DeviceState& s = ready(device);
  use_device(device);
  check(cudaMemcpyAsync(dst, src, nbytes, memcpy_kind(kind), s.stream), "cudaMemcpyAsync", device);
}

void* stream(int device) { return ready(device).stream; }

void synchronize(int device) {
  DeviceState& s = ready(device);
  use_device(device);
  check(cudaStreamSynchronize(s.stream), "cudaStreamSynchronize", device);
}

MemoryStats memory_stats(int device) {
  DeviceState& s = ready(device);
  uint64_t reserved = 0;
  check(cudaMemPoolGetAttribute(s.pool, cudaMemPoolAttrReservedMemCurrent, &reserved),
        "cudaMemPoolGetAttribute(ReservedMemCurrent)", device);
  MemoryStats m;
  m.in_use = s.in_use.load();
  m.peak = s.peak.load();
  m.reserved = size_t(reserved);
  return m;
}

void reset_peak(int device) {
  DeviceState& s = ready(device);
  s.peak.store(s.in_use.load());
}

void memset_zero(void* ptr, size_t nbytes, int device) {
  if (nbytes == 0) return;
  DeviceState& s = ready(device);
  use_device(device);
  check(cudaMemsetAsync(ptr, 0, nbytes, s.stream), "cudaMemsetAsync", device);
}

void* allocate_host_pinned(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  void* p = nullptr;
  const cudaError_t err = cudaHostAlloc(&p, nbytes, cudaHostAllocPortable);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw Error(detail::concat("CUDA cudaHostAlloc(", nbytes,
                               " bytes of pinned host memory): ", cudaGetErrorString(err)));
  }
  return p;
}

void free_host_pinned(void* ptr) noexcept {
  if (ptr && cudaFreeHost(ptr) != cudaSuccess) cudaGetLastError();
}

// ---- events ----

Event::Event(int device, bool timing) : device_(device) {
  ready(device);
  use_device(device);
  cudaEvent_t e = nullptr;
  check(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming),
        "cudaEventCreate", device);
  event_ = e;
}

Event::~Event() {
  if (event_ && cudaEventDestroy(static_cast<cudaEvent_t>(event_)) != cudaSuccess) {
    cudaGetLastError();
  }
}

void Event::record() {
  DeviceState& s = ready(device_);
  use_device(device_);
  check(cudaEventRecord(static_cast<cudaEvent_t>(event_), s.stream), "cudaEventRecord", device_);
}

void Event::synchronize() const {
  check(cudaEventSynchronize(static_cast<cudaEvent_t>(event_)), "cudaEventSynchronize", device_);
}

bool Event::done() const {
  const cudaError_t err = cudaEventQuery(static_cast<cudaEvent_t>(event_));
  if (err == cudaErrorNotReady) {
    cudaGetLastError();
    return false;
  }
  check(err, "cudaEventQuery", device_);
  return true;
}

double elapsed_seconds(const Event& start, const Event& end) {
  float ms = 0;
  check(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start.event_),
                             static_cast<cudaEvent_t>(end.event_)),
        "cudaEventElapsedTime", end.device());
  return double(ms) * 1e-3;
}

}  // namespace peng::cuda
