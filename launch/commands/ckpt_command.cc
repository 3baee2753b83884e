#include "peng/launch/commands/ckpt_command.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <memory>
#include <optional>
#include <system_error>

#include <CLI/CLI.hpp>

#include "peng/checkpoint/manifest.h"
#include "peng/checkpoint/store.h"
#include "peng/core/error.h"
#include "peng/launch/checkpointing.h"
#include "peng/models/registry.h"

namespace peng {

namespace {

namespace fs = std::filesystem;

// printf onto the end of `out`.
__attribute__((format(printf, 2, 3))) void appendf(std::string& out, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  va_list again;
  va_copy(again, args);
  const int n = std::vsnprintf(nullptr, 0, fmt, args);
  va_end(args);
  const size_t at = out.size();
  out.resize(at + size_t(n) + 1);
  std::vsnprintf(out.data() + at, size_t(n) + 1, fmt, again);
  va_end(again);
  out.resize(at + size_t(n));
}

// "1.50 MiB" (binary units; bytes below 1 KiB as "512 B").
std::string human_bytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  std::string s;
  if (u == 0) {
    appendf(s, "%llu B", (unsigned long long)bytes);
  } else {
    appendf(s, "%.2f %s", v, kUnits[u]);
  }
  return s;
}

// "2025-01-31 12:00:00 UTC", or "unknown" for 0 (and anything that is no time).
std::string utc_time(double unix_time) {
  if (!(unix_time > 0 && unix_time < 1e12)) return "unknown";
  const std::time_t t = std::time_t(unix_time);
  std::tm tm{};
  char buf[64];
  if (!gmtime_r(&t, &tm) || !std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm))
    return "unknown";
  return buf;
}

int64_t numel_of(const proto::TensorInfo& t) {
  int64_t n = 1;
  for (int64_t d : t.shape()) n *= d;
  return n;
}

std::string shape_of(const proto::TensorInfo& t) {
  return shape_str(Shape(t.shape().begin(), t.shape().end()));
}

bool is_model_tensor(const std::string& name) { return name.rfind("model/", 0) == 0; }

void describe_state(const proto::Manifest& m, const fs::path& dir, std::string& out) {
  const proto::SavedLayout& l = m.layout();
  appendf(out,
          "layout: world %d = dp %d x tp %d x pp %d | zero %d | virtual stages %d | "
          "sequence parallel %s | schedule %s | ep %d\n",
          l.world_size(), l.dp(), l.tp(), l.pp(), l.zero(), l.virtual_stages(),
          l.sequence_parallel() ? "on" : "off", l.pp_schedule().c_str(), std::max(1, l.ep()));
  const proto::ModelConfig& mc = m.model();
  appendf(out, "model: n_layer %d, n_head %d, n_embd %d, vocab_size %d, max_seq_len %d, eps %g\n",
          mc.n_layer(), mc.n_head(), mc.n_embd(), mc.vocab_size(), mc.max_seq_len(),
          double(m.layernorm_eps()));
  std::string arch;
  try {
    for (const auto& [field, value] : describe(checkpoint_model(m, dir))) {
      if (field == "n_layer" || field == "n_head" || field == "n_embd" || field == "vocab_size" ||
          field == "max_seq_len") {
        continue;  // on the line above
      }
      arch += (arch.empty() ? "" : ", ") + field + " " + value;
    }
  } catch (const InputError& e) {  // still worth inspecting (and verifying) the tensors
    arch = std::string("(invalid: ") + e.what() + ")";
  }
  appendf(out, "architecture: %s\n", arch.c_str());
  const proto::OptimizerState& o = m.optimizer();
  appendf(out, "optimizer: %s, steps_taken %lld, beta1 %g, beta2 %g, eps %g, weight_decay %g\n",
          o.kind().c_str(), (long long)o.steps_taken(), double(o.beta1()), double(o.beta2()),
          double(o.eps()), double(o.weight_decay()));
  const proto::LrScheduleState& lr = m.lr_schedule();
  appendf(out,
          "lr schedule: %s, lr %g, warmup_steps %d, min_lr %g, total_steps %lld, "
          "position %lld\n",
          lr.kind().c_str(), double(lr.lr()), lr.warmup_steps(), double(lr.min_lr()),
          (long long)lr.total_steps(), (long long)lr.position());
  const proto::DataPosition& d = m.data();
  appendf(out, "data: next_sequence %lld, seq_len %d, train %s\n", (long long)d.next_sequence(),
          d.seq_len(), d.train().empty() ? "-" : d.train().c_str());
  appendf(out, "rng: model_seed %llu, sample_seed %llu\n", (unsigned long long)m.rng().model_seed(),
          (unsigned long long)m.rng().sample_seed());
}

void describe_files(const proto::Manifest& m, std::string& out) {
  appendf(out, "data files (checksummed in chunks of %s):\n", human_bytes(m.chunk_bytes()).c_str());
  for (const proto::DataFile& f : m.files()) {
    appendf(out, "  %s  %14llu bytes (%s)\n", f.name().c_str(), (unsigned long long)f.bytes(),
            human_bytes(f.bytes()).c_str());
  }
}

void describe_tensors(const proto::Manifest& m, std::string& out) {
  size_t name_w = 4, shape_w = 5;
  for (const proto::TensorInfo& t : m.tensors()) {
    name_w = std::max(name_w, t.name().size());
    shape_w = std::max(shape_w, shape_of(t).size());
  }
  const int nw = int(name_w), sw = int(shape_w);
  appendf(out, "tensors:\n  %-*s  %-*s  %6s  %12s\n", nw, "name", sw, "shape", "shards", "bytes");
  int64_t model_tensors = 0, params = 0;
  uint64_t bytes = 0, file_bytes = 0;
  for (const proto::TensorInfo& t : m.tensors()) {
    const uint64_t b = uint64_t(numel_of(t)) * 4;
    appendf(out, "  %-*s  %-*s  %6d  %12llu\n", nw, t.name().c_str(), sw, shape_of(t).c_str(),
            t.shards_size(), (unsigned long long)b);
    bytes += b;
    if (is_model_tensor(t.name())) ++model_tensors, params += numel_of(t);
  }
  for (const proto::DataFile& f : m.files()) file_bytes += f.bytes();
  appendf(out,
          "total: %d tensors, %llu bytes (%s) in %d data file%s of %llu bytes | model: %lld "
          "tensors, %lld parameters\n",
          m.tensors_size(), (unsigned long long)bytes, human_bytes(bytes).c_str(), m.files_size(),
          m.files_size() == 1 ? "" : "s", (unsigned long long)file_bytes, (long long)model_tensors,
          (long long)params);
}

struct CkptCommandOptions {
  std::string dir;
  bool verify = false;
  std::string to;
  std::string dtype = "f32";
  std::string max_shard_size = "5GB";
};

void run_inspect(const CkptCommandOptions& o) {
  const fs::path dir = ckpt::resolve_checkpoint(o.dir);
  ckpt::CheckpointReader reader(dir);
  std::printf("%s", describe_checkpoint(reader.manifest(), dir).c_str());
  if (!o.verify) return;
  std::fflush(stdout);  // the report stays ahead of an error line
  const VerifyResult v = verify_checkpoint(reader);
  std::printf("verified: %lld tensors, %llu bytes, all checksums match\n", (long long)v.tensors,
              (unsigned long long)v.bytes);
}

void run_export(const CkptCommandOptions& o) {
  const fs::path from = export_checkpoint(o.dir, o.to, parse_dtype(o.dtype),
                                          parse_shard_size(o.max_shard_size, "--max-shard-size"));
  std::printf("wrote %s (config.json and weights, %s) from checkpoint %s\n", o.to.c_str(),
              o.dtype.c_str(), from.string().c_str());
}

}  // namespace

std::string describe_checkpoint(const proto::Manifest& m, const fs::path& dir) {
  std::string out;
  appendf(out, "checkpoint %s (format %u, saved %s)\n", dir.string().c_str(), m.format_version(),
          utc_time(m.unix_time()).c_str());
  appendf(out, "step: %lld\n", (long long)m.step());
  describe_state(m, dir, out);
  describe_files(m, out);
  describe_tensors(m, out);
  return out;
}

VerifyResult verify_checkpoint(ckpt::CheckpointReader& reader) {
  VerifyResult v;
  for (const proto::TensorInfo& t : reader.manifest().tensors()) {
    const Tensor whole = reader.read_whole(t.name());
    ++v.tensors;
    v.bytes += uint64_t(whole.numel()) * 4;
  }
  return v;
}

std::map<std::string, Tensor> checkpoint_parameters(ckpt::CheckpointReader& reader) {
  const DecoderConfig cfg = checkpoint_model(reader.manifest(), reader.dir());
  std::map<std::string, Tensor> params;
  for (const Parameter& p : parameter_table(cfg)) {
    const std::string tensor = "model/" + p.name;
    const proto::TensorInfo& t = reader.tensor(tensor);
    const Shape& want = p.logical_shape;
    PENG_INPUT_CHECK(Shape(t.shape().begin(), t.shape().end()) == want, "checkpoint ",
                     reader.dir().string(), ": tensor ", tensor, " has shape ", shape_of(t),
                     " but the saved model sizes give ", shape_str(want));
    params.emplace(p.name, reader.read_whole(tensor));
  }
  return params;
}

fs::path export_checkpoint(const fs::path& dir, const fs::path& to, DType dtype,
                           uint64_t max_shard_bytes) {
  const fs::path from = ckpt::resolve_checkpoint(dir);
  ckpt::CheckpointReader reader(from);
  save_hf_model(to, checkpoint_model(reader.manifest(), reader.dir()),
                checkpoint_parameters(reader), dtype, max_shard_bytes);
  return from;
}

void add_ckpt_command(CLI::App& app) {
  auto o = std::make_shared<CkptCommandOptions>();
  CLI::App* cmd = app.add_subcommand("ckpt", "inspect, verify and export sharded checkpoints");
  cmd->require_subcommand(1);
  const char* dir_help = "a checkpoint (step-N folder) or a --checkpoint-dir root (its latest)";

  CLI::App* inspect = cmd->add_subcommand(
      "inspect", "print a checkpoint's step, layout, training state, files and tensors");
  inspect->add_option("dir", o->dir, dir_help)->required();
  inspect->add_flag("--verify", o->verify,
                    "read every tensor and check every checksum and the shards' coverage");
  inspect->callback([o] { run_inspect(*o); });

  CLI::App* exp =
      cmd->add_subcommand("export", "write a checkpoint's model as a Hugging Face folder");
  exp->add_option("dir", o->dir, dir_help)->required();
  exp->add_option("--to", o->to, "output folder")->required();
  exp->add_option("--max-shard-size", o->max_shard_size,
                  "largest weight file; larger models are written as shards")
      ->capture_default_str();
  exp->add_option("--dtype", o->dtype, "f32 | bf16 | f16")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}))
      ->capture_default_str();
  exp->callback([o] { run_export(*o); });
}

}  // namespace peng
