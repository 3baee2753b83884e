// Built instead of memory.cu when peng is configured without CUDA: every entry
// point links and fails with a clear error when called.
#include "core/cuda/memory.h"
#include "core/error.h"

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
void* allocate(size_t, int) { unavailable(); }
void deallocate(void*, int) noexcept {}
void copy(void*, const void*, size_t, CopyKind, int) { unavailable(); }
void memset_zero(void*, size_t, int) { unavailable(); }

}  // namespace peng::cuda
