// Writes the seed corpora of the fuzz targets, made with peng's own writers (no binary
// file is committed):
//   fuzz_seeds MANIFEST_DIR SAFETENSORS_DIR
// MANIFEST_DIR gets a small valid manifest, both framed (encode_manifest: what
// manifest.pb holds) and as its bare protobuf payload (what manifest_fuzz frames itself);
// SAFETENSORS_DIR gets small files from write_safetensors (checked to load) and regression
// inputs of fixed findings (checked to be rejected with InputError).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "peng/checkpoint/manifest.h"
#include "peng/core/error.h"
#include "peng/core/io/safetensors.h"

namespace {

namespace fs = std::filesystem;
using namespace peng;

void write(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  PENG_CHECK(out.good(), "writing ", p.string(), " failed");
}

// A tiny two-rank checkpoint: a [6, 8] tensor split by rows over two files, a vector, a
// scalar and a 3-D tensor, chunks of 64 bytes.
proto::Manifest tiny_manifest(bool with_config) {
  constexpr uint64_t kChunk = 64;
  proto::Manifest m;
  m.set_format_version(ckpt::kFormatVersion);
  m.set_step(3);
  m.set_chunk_bytes(kChunk);
  m.set_unix_time(1.7e9);
  m.set_layernorm_eps(1e-5f);
  proto::SavedLayout* l = m.mutable_layout();
  l->set_world_size(2);
  l->set_dp(2);
  l->set_tp(1);
  l->set_pp(1);
  l->set_zero(1);
  l->set_virtual_stages(1);
  l->set_pp_schedule("1f1b");
  proto::OptimizerState* o = m.mutable_optimizer();
  o->set_kind("adamw");
  o->set_steps_taken(3);
  o->set_beta1(0.9f);
  o->set_beta2(0.95f);
  o->set_eps(1e-8f);
  o->set_weight_decay(0.1f);
  proto::LrScheduleState* s = m.mutable_lr_schedule();
  s->set_kind("cosine");
  s->set_lr(6e-4f);
  s->set_warmup_steps(2);
  s->set_total_steps(10);
  s->set_position(3);
  m.mutable_data()->set_next_sequence(24);
  m.mutable_data()->set_seq_len(64);
  m.mutable_data()->set_train("train.bin");
  m.mutable_rng()->set_model_seed(1337);
  m.mutable_rng()->set_sample_seed(42);
  proto::ModelConfig* mc = m.mutable_model();
  mc->set_n_layer(1);
  mc->set_n_head(2);
  mc->set_n_embd(8);
  mc->set_vocab_size(6);
  mc->set_max_seq_len(64);
  if (with_config) {
    proto::TrainConfig* c = m.mutable_config();
    *c->mutable_model() = *mc;
    c->mutable_data()->set_train("train.bin");
    c->mutable_training()->set_steps(10);
    c->mutable_training()->set_batch_size(8);
    c->mutable_parallel()->set_dp(2);
    c->mutable_checkpoint()->set_dir("ckpt");
  }

  uint64_t file_bytes[2] = {0, 0};
  const auto add_shard = [&](proto::TensorInfo* t, int file, std::vector<int64_t> offset,
                             std::vector<int64_t> length) {
    proto::Shard* sh = t->add_shards();
    sh->set_file(file ? "rank-00001.bin" : "rank-00000.bin");
    int64_t volume = 1;
    for (size_t d = 0; d < offset.size(); ++d) {
      sh->add_offset(offset[d]);
      sh->add_length(length[d]);
      volume *= length[d];
    }
    const uint64_t bytes = uint64_t(volume) * 4;
    sh->set_byte_offset(file_bytes[file]);
    sh->set_byte_length(bytes);
    std::vector<char> payload(bytes);
    for (size_t i = 0; i < bytes; ++i) payload[i] = char(i * 7 + uint64_t(file));
    for (uint64_t c = 0; c < bytes; c += kChunk)
      sh->add_chunk_xxh3(ckpt::checksum(payload.data() + c, std::min(kChunk, bytes - c)));
    file_bytes[file] += bytes;
  };
  const auto add_tensor = [&](const std::string& name, std::vector<int64_t> shape) {
    proto::TensorInfo* t = m.add_tensors();
    t->set_name(name);
    t->set_dtype("f32");
    for (int64_t d : shape) t->add_shape(d);
    return t;
  };
  proto::TensorInfo* wte = add_tensor("model/wte.weight", {6, 8});
  add_shard(wte, 0, {0, 0}, {3, 8});
  add_shard(wte, 1, {3, 0}, {3, 8});
  add_shard(add_tensor("model/ln_f.bias", {8}), 0, {0}, {8});
  add_shard(add_tensor("optim/exp_avg/model/scale", {}), 1, {}, {});
  proto::TensorInfo* w3 = add_tensor("optim/exp_avg_sq/model/h.0.attn.c_attn.weight", {2, 3, 4});
  add_shard(w3, 0, {0, 0, 0}, {1, 3, 4});
  add_shard(w3, 1, {1, 0, 0}, {1, 3, 4});
  for (int f = 0; f < 2; ++f) {
    proto::DataFile* df = m.add_files();
    df->set_name(f ? "rank-00001.bin" : "rank-00000.bin");
    df->set_bytes(file_bytes[f]);
  }
  return m;
}

void manifest_seeds(const fs::path& dir) {
  for (bool with_config : {true, false}) {
    const proto::Manifest m = tiny_manifest(with_config);
    const std::string framed = ckpt::encode_manifest(m);
    ckpt::decode_manifest(framed, "seed");  // throws if the seed is not valid
    const std::string tag = with_config ? "full" : "noconfig";
    write(dir / ("seed-" + tag + ".framed"), framed);
    write(dir / ("seed-" + tag + ".payload"), m.SerializeAsString());
  }
  proto::Manifest empty;  // no tensors at all
  empty.set_format_version(ckpt::kFormatVersion);
  empty.set_chunk_bytes(4096);
  write(dir / "seed-empty.payload", empty.SerializeAsString());
}

void safetensors_seeds(const fs::path& dir) {
  const Tensor f32 = Tensor::from_vector<float>({1.5f, -2, 0, 3.25f, 1e-3f, -7}, {2, 3});
  Tensor bf16 = Tensor::zeros({4}, DType::kBF16);
  Tensor i32 = Tensor::from_vector<int32_t>({-5}, {});
  Tensor u16 = Tensor::from_vector<uint16_t>({1, 2, 3, 65535}, {2, 2});
  Tensor f64 = Tensor::from_vector<double>({3.14159}, {1});
  Tensor none = Tensor::zeros({0, 5});
  const std::vector<std::vector<std::pair<std::string, Tensor>>> files = {
      {{"wte.weight", f32},
       {"ln.bias", bf16},
       {"step", i32},
       {"tokens", u16},
       {"x", f64},
       {"empty", none}},
      {{"h.0.attn.c_attn.weight", f32}},
  };
  for (size_t i = 0; i < files.size(); ++i) {
    const fs::path p = dir / ("seed-" + std::to_string(i) + ".safetensors");
    std::map<std::string, std::string> meta;
    if (i == 0) meta = {{"format", "pt"}, {"peng", "fuzz seed"}};
    write_safetensors(p, files[i], meta);
    SafetensorsFile::open(p);  // throws if the seed is not valid
  }
  // Regression seed: a shape nested 30000 arrays deep overflowed the stack inside
  // nlohmann::json (copies, dump) before safetensors.cc bounded the header's depth.
  const std::string deep = "{\"a\":{\"dtype\":\"F32\",\"shape\":" + std::string(30000, '[') +
                           std::string(30000, ']') + ",\"data_offsets\":[0,0]}}";
  const uint64_t n = deep.size();
  const fs::path p = dir / "regression-deep-nesting.safetensors";
  write(p, std::string(reinterpret_cast<const char*>(&n), 8) + deep);
  try {
    SafetensorsFile::open(p);
    PENG_CHECK(false, p.string(), " was accepted");
  } catch (const InputError&) {
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: fuzz_seeds MANIFEST_DIR SAFETENSORS_DIR\n");
    return 2;
  }
  try {
    fs::create_directories(argv[1]);
    fs::create_directories(argv[2]);
    manifest_seeds(argv[1]);
    safetensors_seeds(argv[2]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
