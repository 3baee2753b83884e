#include "peng/checkpoint/writer.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <utility>

#include "peng/checkpoint/manifest.h"
#include "peng/checkpoint/store.h"
#include "peng/core/error.h"
#include "peng/core/io/atomic_file.h"

namespace peng::ckpt {

namespace fs = std::filesystem;

SavePlan plan_regions(const std::vector<Region>& regions, int rank) {
  SavePlan plan;
  plan.file = rank_file_name(rank);
  std::map<std::string, size_t> index;  // tensor name -> position in plan.tensors
  for (const Region& r : regions) {
    auto [it, fresh] = index.emplace(r.tensor, plan.tensors.size());
    if (fresh) {
      proto::TensorInfo t;
      t.set_name(r.tensor);
      t.set_dtype("f32");
      for (int64_t d : r.logical_shape) t.add_shape(d);
      plan.tensors.push_back(std::move(t));
    }
    const Shape local = shard_shape(r.tensor, r.global_shape, r.spec);
    for (BoxPair& b : region_boxes(r)) {
      proto::TensorInfo& t = plan.tensors[it->second];
      proto::Shard* s = t.add_shards();
      s->set_file(plan.file);
      s->set_byte_offset(plan.bytes);
      s->set_byte_length(uint64_t(b.global.numel()) * sizeof(float));
      for (size_t d = 0; d < b.global.offset.size(); ++d) {
        s->add_offset(b.global.offset[d]);
        s->add_length(b.global.length[d]);
      }
      SavePlan::Piece p{.tensor = it->second, .shard = size_t(t.shards_size() - 1)};
      if (contiguous(b.local.length, local)) {
        p.src = r.data + (flat_index(local, b.local.offset) - r.begin);
      } else {
        p.region = &r;
        p.box = std::move(b);
      }
      plan.bytes += s->byte_length();
      plan.pieces.push_back(std::move(p));
    }
  }
  return plan;
}

namespace {

// The piece's bytes: in place, or gathered into `scratch`.
const char* piece_bytes(const SavePlan::Piece& p, uint64_t bytes, std::vector<char>& scratch) {
  if (p.src) return reinterpret_cast<const char*>(p.src);
  scratch.resize(bytes);
  const Region& r = *p.region;
  const Shape local = shard_shape(r.tensor, r.global_shape, r.spec);
  copy_box(p.box.local.length, r.data, {local, p.box.local.offset, r.begin},
           reinterpret_cast<float*>(scratch.data()),
           {p.box.global.length, std::vector<int64_t>(local.size(), 0), 0});
  return scratch.data();
}

proto::Shard& shard_of(SavePlan& plan, const SavePlan::Piece& p) {
  return *plan.tensors[p.tensor].mutable_shards(int(p.shard));
}

}  // namespace

void snapshot(SavePlan& plan, std::vector<char>& buffer) {
  buffer.resize(plan.bytes);
  std::vector<char> scratch;
  for (SavePlan::Piece& p : plan.pieces) {
    const proto::Shard& s = shard_of(plan, p);
    char* dst = buffer.data() + s.byte_offset();
    if (p.src) {
      std::memcpy(dst, p.src, s.byte_length());
    } else {
      std::memcpy(dst, piece_bytes(p, s.byte_length(), scratch), s.byte_length());
    }
    p = {.tensor = p.tensor, .shard = p.shard, .src = reinterpret_cast<const float*>(dst)};
  }
}

void write_plan(SavePlan& plan, const fs::path& path, uint64_t chunk_bytes, FileSystem& files,
                const FileOptions& data_files) {
  AtomicFileWriter w(path, files, data_files);
  std::vector<char> scratch;
  for (const SavePlan::Piece& p : plan.pieces) {
    proto::Shard& s = shard_of(plan, p);
    PENG_CHECK(w.bytes_written() == s.byte_offset(), plan.file, ": pieces out of order");
    const char* bytes = piece_bytes(p, s.byte_length(), scratch);
    s.clear_chunk_xxh3();
    for (uint64_t o = 0; o < s.byte_length(); o += chunk_bytes) {
      s.add_chunk_xxh3(checksum(bytes + o, std::min(chunk_bytes, s.byte_length() - o)));
    }
    w.write(bytes, s.byte_length());
  }
  w.commit();
}

namespace {

// Every rank says whether it failed; returns 0 when none did, else 1 + the highest failed
// rank. Collective.
int failed_rank(Communicator* comm, bool failed, int rank) {
  if (!comm) return failed ? 1 : 0;
  Tensor t = Tensor::from_vector<int32_t>({failed ? rank + 1 : 0}, {1});
  comm->all_reduce(t, ReduceOp::kMax)->wait();
  return t.data<int32_t>()[0];
}

// Sends each rank's bytes to rank 0 (returned there, in rank order; elsewhere empty).
std::vector<std::string> gather_to_root(Communicator* comm, const std::string& mine) {
  if (!comm) return {mine};
  const auto packed = [](int64_t bytes) { return Shape{(bytes + 3) / 4}; };
  if (comm->rank() != 0) {
    Tensor n = Tensor::from_vector<int32_t>({int32_t(mine.size())}, {1});
    comm->send(n, 0, 1)->wait();
    Tensor b = Tensor::zeros(packed(int64_t(mine.size())), DType::kI32);
    std::copy(mine.begin(), mine.end(), reinterpret_cast<char*>(b.data<int32_t>()));
    comm->send(b, 0, 2)->wait();
    return {};
  }
  std::vector<std::string> out{mine};
  for (int r = 1; r < comm->size(); ++r) {
    Tensor n = Tensor::empty({1}, DType::kI32);
    comm->recv(n, r, 1)->wait();
    const int32_t bytes = n.data<int32_t>()[0];
    Tensor b = Tensor::empty(packed(bytes), DType::kI32);
    comm->recv(b, r, 2)->wait();
    const char* p = reinterpret_cast<const char*>(b.data<int32_t>());
    out.emplace_back(p, p + bytes);
  }
  return out;
}

// The manifest: `meta` plus every rank's file and shards (`parts`, in rank order).
void merge_parts(const std::vector<std::string>& parts, proto::Manifest& meta) {
  meta.set_format_version(kFormatVersion);
  meta.set_chunk_bytes(kChunkBytes);
  meta.set_unix_time(double(std::time(nullptr)));
  std::map<std::string, int> index;  // tensor name -> position in meta.tensors
  for (const std::string& bytes : parts) {
    proto::Manifest p;
    PENG_CHECK(p.ParseFromString(bytes), "bad shard list from a rank");
    *meta.add_files() = p.files(0);
    for (const proto::TensorInfo& t : p.tensors()) {
      auto [it, fresh] = index.emplace(t.name(), meta.tensors_size());
      if (fresh) {
        *meta.add_tensors() = t;
      } else {
        for (const proto::Shard& s : t.shards())
          *meta.mutable_tensors(it->second)->add_shards() = s;
      }
    }
  }
}

// Runs `body`, turning a failure into a message.
template <typename F>
bool attempt(F&& body, std::string& error) {
  try {
    body();
    return true;
  } catch (const std::exception& e) {
    error = e.what();
    return false;
  }
}

}  // namespace

fs::path commit_checkpoint(SavePlan& plan, proto::Manifest meta, const fs::path& root,
                           int keep_last, Communicator* comm, FileSystem& files,
                           const FileOptions& data_files) {
  const int rank = comm ? comm->rank() : 0;
  const fs::path final_dir = root / step_dir_name(meta.step());
  std::string error;
  const auto fail = [&](int who, const char* what) {
    if (who - 1 == rank) throw IoError(error);
    throw IoError(detail::concat("checkpoint ", final_dir.string(), ": rank ", who - 1, " failed ",
                                 what, " (see its error)"));
  };

  // 1. A fresh temporary folder.
  const fs::path tmp = tmp_dir(root, meta.step());
  bool ok = rank != 0 || attempt([&] { begin_save(root, meta.step(), files); }, error);
  if (int who = failed_rank(comm, !ok, rank)) fail(who, "to create the checkpoint folder");

  // 2. Every rank's file.
  ok = attempt([&] { write_plan(plan, tmp / plan.file, kChunkBytes, files, data_files); }, error);
  if (int who = failed_rank(comm, !ok, rank)) fail(who, "to write its shard file");

  // 3. The manifest and the commit, on rank 0.
  proto::Manifest part;
  proto::DataFile* f = part.add_files();
  f->set_name(plan.file);
  f->set_bytes(plan.bytes);
  for (const proto::TensorInfo& t : plan.tensors) *part.add_tensors() = t;
  const std::vector<std::string> parts = gather_to_root(comm, part.SerializeAsString());
  ok = rank != 0 || attempt(
                        [&] {
                          merge_parts(parts, meta);
                          publish(root, meta.step(), encode_manifest(meta), keep_last, files);
                        },
                        error);
  if (int who = failed_rank(comm, !ok, rank)) fail(who, "to commit the checkpoint");
  return final_dir;
}

Checkpointer::Checkpointer(fs::path root, int keep_last, bool async, Communicator* comm,
                           const FileOptions& data_files, FileSystem& files)
    : root_(std::move(root)),
      keep_last_(keep_last),
      async_(async),
      comm_(comm),
      data_files_(data_files),
      fs_(files) {}

Checkpointer::~Checkpointer() {
  try {
    wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  }
}

void Checkpointer::wait() {
  if (thread_.joinable()) thread_.join();
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  if (!pending_.empty()) last_ = std::exchange(pending_, {});
}

double Checkpointer::save(const std::vector<Region>& regions, proto::Manifest meta) {
  const auto t0 = std::chrono::steady_clock::now();
  wait();
  SavePlan plan = plan_regions(regions, comm_ ? comm_->rank() : 0);
  if (async_) {
    snapshot(plan, snapshot_);
    thread_ = std::thread([this, plan = std::move(plan), meta = std::move(meta)]() mutable {
      try {
        pending_ =
            commit_checkpoint(plan, std::move(meta), root_, keep_last_, comm_, fs_, data_files_);
      } catch (...) {
        error_ = std::current_exception();
      }
    });
  } else {
    last_ = commit_checkpoint(plan, std::move(meta), root_, keep_last_, comm_, fs_, data_files_);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace peng::ckpt
