// libFuzzer target: the safetensors reader (core/io/safetensors.cc).
//
// SafetensorsFile::open only takes a path, so each input is written to an in-memory file
// (memfd) and opened as /proc/self/fd/N. When the header is accepted, every tensor is read
// with read_bytes() and, when peng has its dtype, read(), and both must return exactly the
// bytes the header points at. A peng::Error is the expected answer to bad input; anything
// else (a crash, a sanitizer report, another exception type) is a finding.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "peng/core/error.h"
#include "peng/core/io/safetensors.h"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "safetensors_fuzz: %s\n", what);
  std::abort();
}

int memfd() {
  static const int fd = [] {
    const int f = ::memfd_create("safetensors_fuzz", MFD_CLOEXEC);
    if (f < 0) fail("memfd_create failed");
    return f;
  }();
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd();
  if (::ftruncate(fd, 0) != 0) fail("ftruncate failed");
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::pwrite(fd, data + done, size - done, off_t(done));
    if (n <= 0) fail("pwrite failed");
    done += size_t(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    const peng::SafetensorsFile f = peng::SafetensorsFile::open(path);
    if (f.file_size() != size || f.data_offset() > size) fail("bad file_size or data_offset");
    for (const std::string& name : f.names()) {
      const peng::SafetensorsFile::TensorInfo& ti = f.info(name);
      if (ti.begin > ti.end || f.data_offset() + ti.end > size) fail("accepted range outside file");
      const uint8_t* expected = data + f.data_offset() + ti.begin;
      const std::string bytes = f.read_bytes(name);
      if (bytes.size() != ti.nbytes() || std::memcmp(bytes.data(), expected, bytes.size()) != 0)
        fail("read_bytes differs from the file");
      if (!ti.dtype) continue;
      const peng::Tensor t = f.read(name);
      if (t.shape() != ti.shape || t.dtype() != *ti.dtype || uint64_t(t.nbytes()) != ti.nbytes())
        fail("read() gives a tensor of another shape, dtype or size");
      if (t.nbytes() && std::memcmp(t.raw_data(), expected, ti.nbytes()) != 0)
        fail("read() differs from the file");
    }
    for (const auto& [k, v] : f.metadata()) (void)(k.size() + v.size());
  } catch (const peng::Error&) {
  }
  return 0;
}
