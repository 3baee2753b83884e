#include "peng/checkpoint/reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "peng/checkpoint/manifest.h"
#include "peng/core/error.h"

namespace peng::ckpt {

namespace fs = std::filesystem;

CheckpointReader::CheckpointReader(fs::path dir)
    : dir_(std::move(dir)), manifest_(read_manifest(dir_)) {
  for (int i = 0; i < manifest_.tensors_size(); ++i) by_name_[manifest_.tensors(i).name()] = i;
}

CheckpointReader::~CheckpointReader() {
  for (auto& [name, fd] : fds_) ::close(fd);
}

const proto::TensorInfo& CheckpointReader::tensor(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end())
    throw InputError(detail::concat("checkpoint ", dir_.string(), " has no tensor ", name));
  return manifest_.tensors(it->second);
}

int CheckpointReader::open_file(const std::string& name, const std::string& tensor) {
  if (auto it = fds_.find(name); it != fds_.end()) return it->second;
  const fs::path p = dir_ / name;
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw InputError(detail::concat("checkpoint ", dir_.string(), ": cannot open data file ", name,
                                    " (holding ", tensor, "): ", std::strerror(errno)));
  }
  struct stat st {};
  uint64_t expected = 0;
  for (const proto::DataFile& f : manifest_.files()) {
    if (f.name() == name) expected = f.bytes();
  }
  if (::fstat(fd, &st) != 0 || uint64_t(st.st_size) != expected) {
    ::close(fd);
    throw InputError(detail::concat("checkpoint ", dir_.string(), ": data file ", name, " has ",
                                    uint64_t(st.st_size), " bytes, the manifest says ", expected,
                                    " (truncated or replaced; it holds ", tensor, ")"));
  }
  fds_[name] = fd;
  return fd;
}

void CheckpointReader::read_box(const proto::TensorInfo& t, const Region& r, const BoxPair& b) {
  const Shape local = shard_shape(r.tensor, r.global_shape, r.spec);
  const uint64_t chunk = manifest_.chunk_bytes();
  std::vector<Box> seen;
  int64_t covered = 0;
  for (const proto::Shard& s : t.shards()) {
    const Box sb = shard_box(s);
    const Box in = intersect(sb, b.global);
    if (in.empty()) continue;
    for (const Box& other : seen) {
      if (!intersect(other, in).empty()) {
        throw InputError(detail::concat("checkpoint ", dir_.string(), ": tensor ", t.name(),
                                        " has overlapping shards at ", box_str(in)));
      }
    }
    seen.push_back(in);
    covered += in.numel();
    // The bytes of the overlap within the shard, widened to whole checksum chunks.
    std::vector<int64_t> first(in.offset.size()), last(in.offset.size());
    for (size_t d = 0; d < in.offset.size(); ++d) {
      first[d] = in.offset[d] - sb.offset[d];
      last[d] = first[d] + in.length[d] - 1;
    }
    const uint64_t lo = uint64_t(flat_index(sb.length, first)) * 4;
    const uint64_t hi = uint64_t(flat_index(sb.length, last) + 1) * 4;
    const uint64_t c0 = lo / chunk, c1 = (hi - 1) / chunk;
    const uint64_t begin = c0 * chunk, end = std::min((c1 + 1) * chunk, s.byte_length());
    std::vector<int64_t> at_local = b.local.offset;
    for (size_t d = 0; d < at_local.size(); ++d) at_local[d] += in.offset[d] - b.global.offset[d];
    // Whole chunks of one run in the file, landing on one run in memory (a shard read by
    // the layout that wrote it): read in place, then verify there.
    const bool in_place = lo == begin && hi == end && contiguous(in.length, sb.length) &&
                          contiguous(in.length, local);
    char* dst = in_place ? reinterpret_cast<char*>(r.data + (flat_index(local, at_local) - r.begin))
                         : nullptr;
    if (!in_place) buffer_.resize(end - begin);
    char* bytes = in_place ? dst : buffer_.data();
    const int fd = open_file(s.file(), t.name());
    for (uint64_t done = 0; done < end - begin;) {
      const ssize_t n =
          ::pread(fd, bytes + done, end - begin - done, off_t(s.byte_offset() + begin + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        throw InputError(
            detail::concat("checkpoint ", dir_.string(), ": reading ", t.name(), " from ", s.file(),
                           " failed: ", n < 0 ? std::strerror(errno) : "unexpected end of file"));
      }
      done += uint64_t(n);
    }
    bytes_read_ += end - begin;
    for (uint64_t c = c0; c <= c1; ++c) {
      const uint64_t o = c * chunk - begin, n = std::min(chunk, s.byte_length() - c * chunk);
      if (checksum(bytes + o, n) != s.chunk_xxh3(int(c))) {
        throw InputError(detail::concat(
            "checkpoint ", dir_.string(), ": checksum mismatch in tensor ", t.name(), " ",
            box_str(sb), " in ", s.file(), " (bytes ", s.byte_offset() + c * chunk, "..",
            s.byte_offset() + c * chunk + n, "): the file is corrupt"));
      }
    }
    if (!in_place) {
      copy_box(in.length, reinterpret_cast<const float*>(buffer_.data()),
               {sb.length, first, int64_t(begin / 4)}, r.data, {local, at_local, r.begin});
    }
  }
  if (covered != b.global.numel()) {
    throw InputError(detail::concat("checkpoint ", dir_.string(), ": tensor ", t.name(), " ",
                                    box_str(b.global), " is not covered by its shards"));
  }
}

void CheckpointReader::read(const std::vector<Region>& regions) {
  for (const Region& r : regions) {
    const proto::TensorInfo& t = tensor(r.tensor);
    if (!std::equal(t.shape().begin(), t.shape().end(), r.logical_shape.begin(),
                    r.logical_shape.end())) {
      throw InputError(detail::concat("checkpoint ", dir_.string(), ": tensor ", r.tensor,
                                      " has shape ",
                                      shape_str({t.shape().begin(), t.shape().end()}),
                                      " but this model's is ", shape_str(r.logical_shape)));
    }
    for (const BoxPair& b : region_boxes(r)) read_box(t, r, b);
  }
}

Tensor CheckpointReader::read_whole(const std::string& name) {
  const proto::TensorInfo& t = tensor(name);
  const Shape shape(t.shape().begin(), t.shape().end());
  Tensor out = Tensor::empty(shape);
  read({{.tensor = name,
         .logical_shape = shape,
         .global_shape = shape,
         .spec = {},
         .begin = 0,
         .end = out.numel(),
         .data = out.data<float>()}});
  return out;
}

}  // namespace peng::ckpt
