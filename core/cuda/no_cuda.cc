// Built instead of memory.cu when peng is configured without CUDA: every entry
// point links and fails with a clear error when called; the queries answer "nothing".
#include "peng/core/cuda/cuda_backend.h"
#include "peng/core/cuda/memory.h"
#include "peng/core/error.h"

namespace peng::cuda {

namespace {
[[noreturn]] void unavailable() {
  throw Error(
      "this peng build has no CUDA backend (configure with -DPENG_CUDA=ON on a machine with the "
      "CUDA toolkit)");
}
}  // namespace

int device_count() { return 0; }
bool compiled_with_cuda() { return false; }
std::string device_name(int) { unavailable(); }
void* allocate(size_t, int) { unavailable(); }
void deallocate(void*, int) noexcept {}
void copy(void*, const void*, size_t, CopyKind, int) { unavailable(); }
void copy_async(void*, const void*, size_t, CopyKind, int) { unavailable(); }
void* stream(int) { unavailable(); }
void synchronize(int) { unavailable(); }
MemoryStats memory_stats(int) { return {}; }
void reset_peak(int) {}
void memset_zero(void*, size_t, int) { unavailable(); }
void* allocate_host_pinned(size_t) { unavailable(); }
void free_host_pinned(void*) noexcept {}

Event::Event(int device, bool) : device_(device) { unavailable(); }
Event::~Event() = default;
void Event::record() { unavailable(); }
void Event::synchronize() const { unavailable(); }
bool Event::done() const { unavailable(); }
double elapsed_seconds(const Event&, const Event&) { unavailable(); }

CudaBackend& backend(int) { unavailable(); }

}  // namespace peng::cuda
