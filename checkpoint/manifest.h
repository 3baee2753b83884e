// The checkpoint manifest file: DIR/manifest.pb.
//
// Framing (so that a torn or edited file is detected before protobuf sees it):
//   "PENGCKPT" (8 bytes) | payload length (u64 LE) | XXH3-64 of the payload (u64 LE) |
//   payload = a serialized peng.proto.Manifest (proto/peng/checkpoint.proto).
// decode_manifest() checks the frame, parses, and validates every field a reader relies
// on (names, shapes, byte ranges, chunk counts, coverage by volume), so nothing malformed
// reaches the loader. Errors are InputError naming `where` (the file) and the field.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "peng/checkpoint.pb.h"
#include "peng/checkpoint/box.h"

namespace peng::ckpt {

inline constexpr char kManifestFile[] = "manifest.pb";
inline constexpr uint32_t kFormatVersion = 1;

std::string encode_manifest(const proto::Manifest& m);
proto::Manifest decode_manifest(std::string_view bytes, const std::string& where);

// Reads and decodes DIR/manifest.pb.
proto::Manifest read_manifest(const std::filesystem::path& dir);

// The box a shard holds.
Box shard_box(const proto::Shard& s);

// XXH3-64 of n bytes.
uint64_t checksum(const void* data, size_t n);

}  // namespace peng::ckpt
