// CUDA device memory: the part of the CUDA backend the core Tensor, the trainer and the
// checkpoints need. Implemented in memory.cu when peng is built with CUDA, and by
// no_cuda.cc (which throws a clear peng::Error) otherwise, so every configuration links.
//
// One stream per device and process (created on first use, non-blocking): every
// allocation, copy, fill, kernel and library call on a device is ordered on it, so
// device memory is reused in stream order and nothing waits for the GPU except the
// calls documented to wait (copies to or from pageable host memory, synchronize, Event's
// waits). Every CUDA error becomes a peng::Error naming the call and the device.
#pragma once

#include <cstddef>
#include <string>

namespace peng::cuda {

// Number of visible CUDA devices; 0 without a driver, a device or CUDA support.
int device_count();
// True when this build contains the CUDA backend.
bool compiled_with_cuda();
// The device's name ("NVIDIA H200"); throws without CUDA or for a device that does not exist.
std::string device_name(int device);

// The stream-ordered caching allocator: cudaMallocAsync / cudaFreeAsync on the device's
// stream from the device's default memory pool, whose release threshold is raised so that
// freed memory stays cached in the pool (no cudaMalloc per activation, no return to the
// driver at each synchronization). allocate(0) is nullptr. Memory freed by deallocate may
// be handed out again to work queued later on the stream: only the stream may still use it.
void* allocate(size_t nbytes, int device);
void deallocate(void* ptr, int device) noexcept;

enum class CopyKind { kHostToDevice, kDeviceToHost, kDeviceToDevice };
// Copy ordered on the device's stream (below); returns once `dst` may be read by the host
// (device-to-host) or `src` may be reused (host-to-device): both wait for the stream.
// Device-to-device copies do not wait for the host.
void copy(void* dst, const void* src, size_t nbytes, CopyKind kind, int device);
// The same, never waiting: the host side must be pinned memory (allocate_host_pinned) that
// nobody touches (host-to-device: changes; device-to-host: reads) until the stream has
// passed the copy (an Event recorded after it, or synchronize).
void copy_async(void* dst, const void* src, size_t nbytes, CopyKind kind, int device);

// The device's stream (a cudaStream_t): every peng kernel, copy, allocation and library call
// on `device` is ordered on this one stream (one per device per process), so nothing inside
// a step needs a synchronization but the reads of host values.
void* stream(int device);
// Waits until all work queued on the device's stream has finished.
void synchronize(int device);

// The stream-ordered caching allocator's bytes on `device`: held by live tensors now, the
// most ever held since the last reset_peak, and reserved from the driver by the pool.
struct MemoryStats {
  size_t in_use = 0;
  size_t peak = 0;
  size_t reserved = 0;
};
MemoryStats memory_stats(int device);
void reset_peak(int device);
// Fills nbytes of device memory with zero bytes (queued on the stream; no wait).
void memset_zero(void* ptr, size_t nbytes, int device);

// Page-locked host memory, usable with every device (portable): copies to and from it run
// at full speed and truly asynchronously (copy_async). For checkpoint staging and token
// batches; allocating it is slow, so keep buffers. allocate_host_pinned(0) is nullptr.
void* allocate_host_pinned(size_t nbytes);
void free_host_pinned(void* ptr) noexcept;

// An owned block of pinned host memory (allocate_host_pinned), freed with the object.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t nbytes) : data_(allocate_host_pinned(nbytes)), nbytes_(nbytes) {}
  ~PinnedBuffer() { free_host_pinned(data_); }
  PinnedBuffer(PinnedBuffer&& o) noexcept : data_(o.data_), nbytes_(o.nbytes_) {
    o.data_ = nullptr;
    o.nbytes_ = 0;
  }
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    if (this != &o) {
      free_host_pinned(data_);
      data_ = o.data_;
      nbytes_ = o.nbytes_;
      o.data_ = nullptr;
      o.nbytes_ = 0;
    }
    return *this;
  }
  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
};

// A CUDA event on a device's stream: a mark in the stream's work, for timing phases of
// the GPU's work and for waiting on part of the stream. Not copyable.
class Event {
 public:
  // `timing` false makes a cheaper event that can only be waited on.
  explicit Event(int device, bool timing = true);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  int device() const { return device_; }
  // Marks the stream's current end: the event completes when the GPU gets there.
  void record();
  // Waits until the event recorded last has completed (returns at once if never recorded).
  void synchronize() const;
  // Whether the event recorded last has completed, without waiting.
  bool done() const;

 private:
  friend double elapsed_seconds(const Event& start, const Event& end);
  int device_;
  void* event_ = nullptr;  // cudaEvent_t
};
// Seconds of GPU time between two completed, recorded timing events (end after start),
// with the resolution of cudaEventElapsedTime (about half a microsecond).
double elapsed_seconds(const Event& start, const Event& end);

}  // namespace peng::cuda
