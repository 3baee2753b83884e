// libFuzzer target: ckpt::decode_manifest (checkpoint/manifest.cc).
//
// Every input is decoded twice: as it is (the framing: magic, length, checksum) and as the
// payload of a correctly framed file, so that mutations reach protobuf parsing and
// validate() instead of all failing the checksum. A peng::Error is the expected answer to
// bad input; anything else (a crash, a sanitizer report, another exception type) is a
// finding. A manifest that decodes must keep the promises the reader relies on (every
// shard inside its tensor's shape and file, byte_length = 4 x volume) and re-encode to a
// manifest that decodes to the same message.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <google/protobuf/stubs/logging.h>

#include "peng/checkpoint/manifest.h"
#include "peng/core/error.h"

namespace {

using peng::ckpt::checksum;
using peng::ckpt::decode_manifest;
using peng::ckpt::encode_manifest;

void put_u64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(char((v >> (8 * i)) & 0xff));
}

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "manifest_fuzz: %s\n", what);
  std::abort();
}

void check_invariants(const peng::proto::Manifest& m) {
  for (const auto& t : m.tensors()) {
    for (const auto& s : t.shards()) {
      const peng::ckpt::Box b = peng::ckpt::shard_box(s);
      if (b.offset.size() != size_t(t.shape_size())) fail("shard rank differs from the tensor's");
      uint64_t volume = 1;
      for (int d = 0; d < t.shape_size(); ++d) {
        volume *= uint64_t(b.length[d]);
        if (b.offset[d] < 0 || b.length[d] < 1 || b.offset[d] + b.length[d] > t.shape(d))
          fail("a decoded shard reaches outside its tensor");
      }
      if (s.byte_length() != volume * 4) fail("shard byte_length != 4 x volume");
      bool listed = false;
      for (const auto& f : m.files()) {
        if (f.name() == s.file()) {
          listed = true;
          if (s.byte_offset() > f.bytes() || s.byte_length() > f.bytes() - s.byte_offset())
            fail("a decoded shard reaches outside its file");
        }
      }
      if (!listed) fail("a decoded shard names an unlisted file");
    }
  }
}

void decode(std::string_view bytes, bool round_trip) {
  peng::proto::Manifest m;
  try {
    m = decode_manifest(bytes, "fuzz");
  } catch (const peng::Error&) {
    return;
  }
  check_invariants(m);
  if (!round_trip) return;
  const std::string again = encode_manifest(m);
  peng::proto::Manifest m2;
  try {
    m2 = decode_manifest(again, "fuzz (re-encoded)");
  } catch (const peng::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    fail("a decoded manifest does not decode after encode_manifest");
  }
  if (m2.SerializeAsString() != m.SerializeAsString()) fail("round trip changed the manifest");
}

}  // namespace

// Protobuf logs an ERROR line for each string field with invalid UTF-8 (the parse then
// fails, which decode_manifest reports): silence that, fatal checks still abort.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view raw(reinterpret_cast<const char*>(data), size);
  decode(raw, false);
  std::string framed("PENGCKPT", 8);
  put_u64(framed, size);
  put_u64(framed, checksum(data, size));
  framed.append(raw);
  decode(framed, true);
  return 0;
}
