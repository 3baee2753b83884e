#include "peng/launch/config.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "peng/core/error.h"
#include "peng/models/hf/hf_weights.h"
#include "peng/optim/lr_schedule.h"
#include "peng/parallel/pipeline/schedule_registry.h"

namespace peng {

namespace pb = google::protobuf;

std::string device_setting(const proto::TrainConfig& config) {
  return config.training().device().empty() ? "cpu" : config.training().device();
}

std::string precision_setting(const proto::TrainConfig& config) {
  return config.training().precision().empty() ? "fp32" : config.training().precision();
}

std::string grad_reduce_setting(const proto::TrainConfig& config) {
  const std::string& s = config.parallel().grad_reduce_dtype();
  return s.empty() ? "fp32" : s;
}

proto::TrainConfig default_train_config() {
  proto::TrainConfig c;
  c.mutable_model()->set_seed(1337);
  auto* o = c.mutable_optim();
  o->set_lr(6e-4f);
  o->set_beta1(0.9f);
  o->set_beta2(0.95f);
  o->set_eps(1e-8f);
  o->set_weight_decay(0.1f);
  o->set_grad_clip(1.0f);
  c.mutable_schedule()->set_lr_schedule("constant");
  auto* t = c.mutable_training();
  t->set_steps(100);
  t->set_batch_size(8);
  t->set_seq_len(128);
  t->set_device("cpu");
  t->set_precision("fp32");
  c.mutable_parallel()->set_tp(1);
  c.mutable_parallel()->set_pp(1);
  c.mutable_parallel()->set_bucket_mb(25);
  c.mutable_parallel()->set_collective_timeout_s(600);
  c.mutable_parallel()->set_comm("auto");
  c.mutable_parallel()->set_grad_reduce_dtype("fp32");
  c.mutable_parallel()->set_pp_schedule("1f1b");
  c.mutable_parallel()->set_virtual_stages(1);
  c.mutable_parallel()->set_pp_balance("even");
  c.mutable_checkpoint()->set_resume("auto");
  c.mutable_checkpoint()->set_direct_io("auto");
  auto* tm = c.mutable_telemetry();
  tm->set_peak("auto");
  tm->set_ledger_every_s(600);
  tm->set_nvml_period_s(1);
  tm->set_export_every(1);
  auto* l = c.mutable_logging();
  l->set_log_every(10);
  l->set_val_batches(4);
  l->set_sample_tokens(64);
  l->set_top_k(40);
  l->set_export_max_shard_size("5GB");
  return c;
}

namespace {
// Keeps the first parse error with its position.
class FirstError : public pb::io::ErrorCollector {
 public:
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    if (message_.empty()) {
      message_ = std::to_string(line + 1) + ":" + std::to_string(column + 1) + ": " + message;
    }
  }
  const std::string& message() const { return message_; }

 private:
  std::string message_;
};

std::string field_names(const pb::Descriptor* d) {
  std::string out;
  for (int i = 0; i < d->field_count(); ++i) out += (i ? ", " : "") + d->field(i)->name();
  return out;
}
}  // namespace

void merge_config_file(const std::string& path, proto::TrainConfig& config) {
  std::ifstream f(path);
  if (!f) throw InputError("cannot open config file " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  pb::TextFormat::Parser parser;
  FirstError errors;
  parser.RecordErrorsTo(&errors);
  const std::string text = ss.str();
  if (!parser.MergeFromString(text, &config)) {
    // Quote the offending line so the field at fault is named even for type errors.
    const int line_no = std::stoi(errors.message());
    std::istringstream lines(text);
    std::string line;
    for (int i = 0; i < line_no && std::getline(lines, line);) ++i;
    throw InputError(path + ":" + errors.message() + " (in: `" + line + "`)");
  }
}

void set_config_field(const std::string& assignment, proto::TrainConfig& config) {
  const size_t eq = assignment.find('=');
  PENG_INPUT_CHECK(eq != std::string::npos && eq > 0, "--set expects field=value, got '",
                   assignment, "'");
  const std::string path = assignment.substr(0, eq);
  std::string value = assignment.substr(eq + 1);
  pb::Message* msg = &config;
  std::istringstream parts(path);
  std::string part;
  std::vector<std::string> names;
  while (std::getline(parts, part, '.')) names.push_back(part);
  for (size_t i = 0; i < names.size(); ++i) {
    const pb::Descriptor* d = msg->GetDescriptor();
    const pb::FieldDescriptor* field = d->FindFieldByName(names[i]);
    PENG_INPUT_CHECK(field, "unknown config field '", path, "' (", d->name(),
                     " has: ", field_names(d), ")");
    if (i + 1 < names.size()) {
      PENG_INPUT_CHECK(field->type() == pb::FieldDescriptor::TYPE_MESSAGE, "config field '", path,
                       "': ", names[i], " is not a message");
      msg = msg->GetReflection()->MutableMessage(msg, field);
      continue;
    }
    PENG_INPUT_CHECK(field->type() != pb::FieldDescriptor::TYPE_MESSAGE, "config field '", path,
                     "' is a message; set one of its fields (", field_names(field->message_type()),
                     ")");
    if (field->type() == pb::FieldDescriptor::TYPE_STRING) {
      std::string quoted = "\"";
      for (char ch : value)
        quoted += (ch == '"' || ch == '\\') ? std::string("\\") + ch : std::string(1, ch);
      value = quoted + "\"";
    }
    if (!pb::TextFormat::ParseFieldValueFromString(value, field, msg)) {
      const char* kind = field->cpp_type_name();
      throw InputError("config field '" + path + "': cannot parse '" + assignment.substr(eq + 1) +
                       "' as " + kind);
    }
    return;
  }
  throw InputError("--set expects field=value, got '" + assignment + "'");
}

const std::vector<ConfigFlag>& config_flags() {
  static const std::vector<ConfigFlag> flags = {
      {"--init-from", "model.init_from", "Hugging Face model folder to start from", false},
      {"--model", "model.preset",
       "preset: gpt2-124m ... gpt2-1558m, llama3.2-1b, llama3.1-8b, llama3.1-70b, "
       "qwen2.5-0.5b, qwen2.5-7b, qwen3-0.6b, qwen3-8b, deepseek-moe-16b, qwen3-30b-a3b-moe, "
       "deepseek-v3-moe",
       false},
      {"--model-family", "model.family",
       "family of custom sizes: gpt2 | llama | qwen2 | qwen3 | deepseek_moe", false},
      {"--n-layer", "model.n_layer", "transformer blocks", false},
      {"--n-head", "model.n_head", "attention heads", false},
      {"--n-embd", "model.n_embd", "embedding width", false},
      {"--vocab-size", "model.vocab_size", "vocabulary size (padded internally to 128)", false},
      {"--max-seq-len", "model.max_seq_len", "longest sequence (default: seq len)", false},
      {"--n-kv-head", "model.n_kv_head", "key/value heads (default: n_head)", false},
      {"--head-dim", "model.head_dim", "width of a head (default: n_embd / n_head)", false},
      {"--ffn-hidden", "model.ffn_hidden", "MLP hidden width (GPT-2: 4 n_embd)", false},
      {"--rope-theta", "model.rope_theta", "RoPE base (Llama family)", false},
      {"--tie-embeddings", "model.tie_embeddings", "true | false: LM head tied to the embedding",
       false},
      {"--experts", "model.experts", "routed experts per MoE layer (deepseek_moe)", false},
      {"--experts-per-token", "model.experts_per_token", "experts each token is routed to (k)",
       false},
      {"--expert-ffn", "model.expert_ffn", "hidden width of one routed expert", false},
      {"--shared-experts", "model.shared_experts", "experts every token sees", false},
      {"--first-dense-layers", "model.first_dense_layers", "leading layers with a dense MLP",
       false},
      {"--scoring", "model.scoring", "router scores: softmax | sigmoid", false},
      {"--norm-topk", "model.norm_topk", "true | false: the chosen weights sum to 1", false},
      {"--aux-loss-alpha", "model.aux_loss_alpha", "weight of the load-balancing loss", false},
      {"--bias-update-speed", "model.bias_update_speed",
       "DeepSeek-V3 aux-loss-free balancing speed (0: off)", false},
      {"--seed", "model.seed", "seed of the random init", false},
      {"--data", "data.train", "training token shard(s), a file or a glob", false},
      {"--val-data", "data.val", "validation token shard(s)", false},
      {"--tokenizer", "data.tokenizer",
       "byte, or a folder with tokenizer.json (Hugging Face) or encoder.json + vocab.bpe", false},
      {"--steps", "training.steps", "optimizer steps", false},
      {"--batch-size", "training.batch_size", "global batch in sequences", false},
      {"--seq-len", "training.seq_len", "sequence length T", false},
      {"--micro-batch-size", "training.micro_batch_size", "sequences per forward/backward", false},
      {"--recompute", "training.recompute", "activation recomputation: none | selective | full",
       false},
      {"--recompute-modules", "training.recompute_modules",
       "selective: comma list of core_attn, mlp_act, norm (default core_attn)", false},
      {"--recompute-layers", "training.recompute_layers",
       "recompute only the first N layers of each pipeline stage (0: all)", false},
      {"--device", "training.device",
       "cpu | cuda | auto: where each rank trains (cuda: its local rank's GPU; auto: that GPU "
       "when there is one, else cpu)",
       false},
      {"--precision", "training.precision", "fp32 (exact) | bf16 (GPU mixed precision)", false},
      {"--lr", "optim.lr", "peak learning rate", false},
      {"--beta1", "optim.beta1", "AdamW beta1", false},
      {"--beta2", "optim.beta2", "AdamW beta2", false},
      {"--eps", "optim.eps", "AdamW epsilon", false},
      {"--weight-decay", "optim.weight_decay", "decoupled weight decay (2-D+ tensors)", false},
      {"--grad-clip", "optim.grad_clip", "global gradient-norm clip (0: off)", false},
      {"--lr-schedule", "schedule.lr_schedule", "constant | cosine", false},
      {"--warmup-steps", "schedule.warmup_steps", "linear warmup steps", false},
      {"--min-lr", "schedule.min_lr", "cosine floor", false},
      {"--metrics-jsonl", "logging.metrics_jsonl", "per-step metrics file (JSON lines)", false},
      {"--log-every", "logging.log_every", "progress line every N steps", false},
      {"--val-every", "logging.val_every", "validation every N steps", false},
      {"--val-batches", "logging.val_batches", "batches per validation", false},
      {"--sample-every", "logging.sample_every", "text sample every N steps", false},
      {"--sample-tokens", "logging.sample_tokens", "tokens per sample", false},
      {"--top-k", "logging.top_k", "top-k of sampling", false},
      {"--export-to", "logging.export_to", "write the trained model as a HF folder", false},
      {"--max-shard-size", "logging.export_max_shard_size",
       "largest weight file of an export (5GB); larger models are sharded", false},
      {"--quiet", "logging.quiet", "no progress line", true},
      {"--dp", "parallel.dp", "data-parallel ranks (default: world / (tp x pp))", false},
      {"--tp", "parallel.tp", "tensor-parallel ranks", false},
      {"--pp", "parallel.pp", "pipeline stages", false},
      {"--ep", "parallel.ep", "expert-parallel ranks, out of dp (MoE models)", false},
      {"--zero", "parallel.zero", "ZeRO stage 0 | 1 | 2 | 3", false},
      {"--zero3-keep-embeddings", "parallel.zero3_keep_embeddings",
       "ZeRO-3: keep the embeddings and head gathered through each step", true},
      {"--bucket-mb", "parallel.bucket_mb", "gradient bucket size in MB", false},
      {"--collective-timeout", "parallel.collective_timeout_s",
       "seconds before a stuck collective aborts the job", false},
      {"--comm", "parallel.comm",
       "tensor collectives: auto | nccl | staged (device tensors through host memory over MPI)",
       false},
      {"--grad-reduce-dtype", "parallel.grad_reduce_dtype",
       "dtype of the data-parallel gradient reduction: fp32 | bf16 (half the bytes)", false},
      {"--pp-schedule", "parallel.pp_schedule",
       "gpipe | 1f1b | interleaved | a registered schedule", false},
      {"--virtual-stages", "parallel.virtual_stages", "model chunks per pipeline rank", false},
      {"--pp-layers", "parallel.pp_layers",
       "layers per pipeline stage, stage 0 first: \"1,3\" (pp x virtual stages entries)", false},
      {"--pp-first-stage-layers", "parallel.pp_first_stage_layers",
       "layers of the first pipeline stage (the others even)", false},
      {"--pp-last-stage-layers", "parallel.pp_last_stage_layers",
       "layers of the last pipeline stage (the others even)", false},
      {"--pp-balance", "parallel.pp_balance",
       "even | auto: place layers by a per-layer FLOPs model (head and loss included)", false},
      {"--sequence-parallel", "parallel.sequence_parallel",
       "shard LayerNorm/residual activations over tp", true},
      {"--checkpoint-dir", "checkpoint.dir", "folder of sharded checkpoints (step-N/, latest)",
       false},
      {"--checkpoint-every", "checkpoint.every", "save every N steps (also at the end)", false},
      {"--resume", "checkpoint.resume", "auto (newest in --checkpoint-dir) | none | PATH", false},
      {"--keep-last", "checkpoint.keep_last", "keep the newest N checkpoints (0: all)", false},
      {"--async-checkpoint", "checkpoint.async", "write checkpoints while training continues",
       true},
      {"--checkpoint-direct-io", "checkpoint.direct_io",
       "auto (O_DIRECT where the file system takes it) | off (buffered)", false},
      {"--peak", "telemetry.peak",
       "peak per device for MFU: auto | TFLOP/s | a device of the table (\"H100 SXM\")", false},
      {"--tensorboard", "telemetry.tensorboard", "folder for TensorBoard event files", false},
      {"--prometheus-textfile", "telemetry.prometheus_textfile",
       "Prometheus textfile (node_exporter), rewritten atomically", false},
      {"--ledger", "telemetry.ledger", "usage ledger to append this job's records to", false},
      {"--ledger-key", "telemetry.ledger_key", "file with the ledger's HMAC-SHA-256 key", false},
      {"--ledger-signing-key", "telemetry.ledger_signing_key",
       "Ed25519 private key (peng keygen) signing the ledger records", false},
      {"--ledger-every", "telemetry.ledger_every_s", "seconds between ledger interval records",
       false},
      {"--project", "telemetry.project", "project name for the ledger", false},
      {"--export-every", "telemetry.export_every", "TensorBoard and Prometheus every N steps",
       false},
  };
  return flags;
}

proto::TrainConfig parse_train_args(const std::vector<std::string>& args) {
  std::string file;
  std::vector<std::string> fields, sets;  // "path=value", in the order given
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (!a.starts_with("--")) {
      PENG_INPUT_CHECK(file.empty(), "a second config file '", a, "' (the first: '", file, "')");
      file = a;
      continue;
    }
    const size_t eq = a.find('=');
    const std::string flag = a.substr(0, eq);
    const auto value = [&]() -> std::string {
      if (eq != std::string::npos) return a.substr(eq + 1);
      PENG_INPUT_CHECK(i + 1 < args.size(), flag, " needs a value");
      return args[++i];
    };
    if (flag == "--set") {
      sets.push_back(value());
      continue;
    }
    const auto& flags = config_flags();
    const auto f = std::find_if(flags.begin(), flags.end(),
                                [&](const ConfigFlag& c) { return flag == c.flag; });
    PENG_INPUT_CHECK(f != flags.end(), "unknown option ", flag, " (peng train --help lists them)");
    const bool bare_switch = f->is_switch && eq == std::string::npos;
    fields.push_back(std::string(f->field) + "=" + (bare_switch ? "true" : value()));
  }
  fields.insert(fields.end(), sets.begin(), sets.end());
  return build_train_config(file, fields);
}

proto::TrainConfig build_train_config(const std::string& file,
                                      const std::vector<std::string>& assignments) {
  proto::TrainConfig c = default_train_config();
  if (!file.empty()) merge_config_file(file, c);
  for (const std::string& a : assignments) set_config_field(a, c);
  return c;
}

void validate_train_config(const proto::TrainConfig& c) {
  const auto& t = c.training();
  PENG_INPUT_CHECK(t.steps() > 0, "training.steps must be > 0, got ", t.steps());
  PENG_INPUT_CHECK(t.batch_size() > 0, "training.batch_size must be > 0, got ", t.batch_size());
  PENG_INPUT_CHECK(t.seq_len() > 0, "training.seq_len must be > 0, got ", t.seq_len());
  PENG_INPUT_CHECK(t.micro_batch_size() >= 0, "training.micro_batch_size must be >= 0, got ",
                   t.micro_batch_size());
  if (t.micro_batch_size() > 0) {
    PENG_INPUT_CHECK(t.batch_size() % t.micro_batch_size() == 0, "training.batch_size (",
                     t.batch_size(), ") is not divisible by training.micro_batch_size (",
                     t.micro_batch_size(), ")");
  }
  const std::string device = device_setting(c), precision = precision_setting(c);
  PENG_INPUT_CHECK(device == "cpu" || device == "cuda" || device == "auto",
                   "training.device (--device) must be cpu, cuda or auto, got \"", t.device(),
                   "\"");
  PENG_INPUT_CHECK(precision == "fp32" || precision == "bf16",
                   "training.precision (--precision) must be fp32 or bf16, got \"", t.precision(),
                   "\"");
  PENG_INPUT_CHECK(precision != "bf16" || device != "cpu",
                   "--precision bf16 needs a GPU (--device cuda or auto): the CPU backend computes "
                   "in fp32 only (training.precision = bf16 with training.device = cpu)");
  PENG_INPUT_CHECK(precision != "bf16",
                   "--precision bf16 is not available yet: the CUDA backend's bf16 mixed-precision "
                   "path is still being built; train with --precision fp32 (the exact mode)");
  const auto& o = c.optim();
  PENG_INPUT_CHECK(o.lr() >= 0, "optim.lr must be >= 0, got ", o.lr());
  PENG_INPUT_CHECK(o.beta1() >= 0 && o.beta1() < 1, "optim.beta1 must be in [0, 1), got ",
                   o.beta1());
  PENG_INPUT_CHECK(o.beta2() >= 0 && o.beta2() < 1, "optim.beta2 must be in [0, 1), got ",
                   o.beta2());
  PENG_INPUT_CHECK(o.eps() > 0, "optim.eps must be > 0, got ", o.eps());
  PENG_INPUT_CHECK(o.weight_decay() >= 0, "optim.weight_decay must be >= 0, got ",
                   o.weight_decay());
  PENG_INPUT_CHECK(o.grad_clip() >= 0, "optim.grad_clip must be >= 0, got ", o.grad_clip());
  LrSchedule::parse_kind(c.schedule().lr_schedule());
  PENG_INPUT_CHECK(c.schedule().warmup_steps() >= 0, "schedule.warmup_steps must be >= 0");
  const auto& p = c.parallel();
  PENG_INPUT_CHECK(p.zero() >= 0 && p.zero() <= 3, "parallel.zero must be 0, 1, 2 or 3, got ",
                   p.zero());
  PENG_INPUT_CHECK(!p.zero3_keep_embeddings() || p.zero() == 3,
                   "parallel.zero3_keep_embeddings needs parallel.zero = 3, got ", p.zero());
  PENG_INPUT_CHECK(p.bucket_mb() >= 0.001 && p.bucket_mb() <= 1e5,
                   "parallel.bucket_mb must be in [0.001, 100000], got ", p.bucket_mb());
  PENG_INPUT_CHECK(p.collective_timeout_s() > 0 && p.collective_timeout_s() <= 1e6,
                   "parallel.collective_timeout_s must be in (0, 1e6], got ",
                   p.collective_timeout_s());
  schedule_spec(p.pp_schedule());  // registered (schedule_registry.h)
  PENG_INPUT_CHECK(p.virtual_stages() >= 1, "parallel.virtual_stages must be >= 1, got ",
                   p.virtual_stages());
  PENG_INPUT_CHECK(p.pp_balance() == "even" || p.pp_balance() == "auto",
                   "parallel.pp_balance (--pp-balance) must be even or auto, got \"",
                   p.pp_balance(), "\"");
  PENG_INPUT_CHECK(int(!p.pp_layers().empty()) +
                           int(p.pp_first_stage_layers() > 0 || p.pp_last_stage_layers() > 0) +
                           int(p.pp_balance() == "auto") <=
                       1,
                   "give at most one of parallel.pp_layers, parallel.pp_first/last_stage_layers "
                   "and parallel.pp_balance auto");
  PENG_INPUT_CHECK(p.comm() == "auto" || p.comm() == "nccl" || p.comm() == "staged",
                   "parallel.comm (--comm) must be auto, nccl or staged, got \"", p.comm(), "\"");
  const std::string reduce = grad_reduce_setting(c);
  PENG_INPUT_CHECK(reduce == "fp32" || reduce == "bf16",
                   "parallel.grad_reduce_dtype (--grad-reduce-dtype) must be fp32 or bf16, got \"",
                   reduce, "\"");
  const auto& k = c.checkpoint();
  PENG_INPUT_CHECK(k.every() >= 0, "checkpoint.every must be >= 0, got ", k.every());
  PENG_INPUT_CHECK(k.keep_last() >= 0, "checkpoint.keep_last must be >= 0, got ", k.keep_last());
  PENG_INPUT_CHECK(!k.resume().empty(), "checkpoint.resume must be auto, none or a path");
  PENG_INPUT_CHECK(k.direct_io() == "auto" || k.direct_io() == "off",
                   "checkpoint.direct_io (--checkpoint-direct-io) must be auto or off, got \"",
                   k.direct_io(), "\"");
  PENG_INPUT_CHECK(k.every() == 0 || !k.dir().empty(),
                   "checkpoint.every needs checkpoint.dir (--checkpoint-dir)");
  const auto& l = c.logging();
  PENG_INPUT_CHECK(l.log_every() >= 0 && l.val_every() >= 0 && l.sample_every() >= 0,
                   "logging.*_every must be >= 0");
  PENG_INPUT_CHECK(l.val_batches() > 0, "logging.val_batches must be > 0, got ", l.val_batches());
  PENG_INPUT_CHECK(l.top_k() > 0, "logging.top_k must be > 0, got ", l.top_k());
  parse_shard_size(l.export_max_shard_size(), "logging.export_max_shard_size");
  const auto& m = c.telemetry();
  PENG_INPUT_CHECK(m.ledger_every_s() > 0 && std::isfinite(m.ledger_every_s()),
                   "telemetry.ledger_every_s must be a positive number of seconds, got ",
                   m.ledger_every_s());
  PENG_INPUT_CHECK(m.nvml_period_s() >= 0.01 && std::isfinite(m.nvml_period_s()),
                   "telemetry.nvml_period_s must be a number of seconds >= 0.01, got ",
                   m.nvml_period_s());
  PENG_INPUT_CHECK(m.export_every() > 0, "telemetry.export_every must be > 0, got ",
                   m.export_every());
  PENG_INPUT_CHECK(m.ledger_key().empty() || !m.ledger().empty(),
                   "telemetry.ledger_key needs telemetry.ledger (--ledger FILE)");
  PENG_INPUT_CHECK(m.ledger_signing_key().empty() || !m.ledger().empty(),
                   "telemetry.ledger_signing_key needs telemetry.ledger (--ledger FILE)");
  PENG_INPUT_CHECK(m.ledger_key().empty() || m.ledger_signing_key().empty(),
                   "telemetry.ledger_key (HMAC) and telemetry.ledger_signing_key (Ed25519) "
                   "never sign one ledger together: give one");
}

std::string config_to_text(const proto::TrainConfig& config) {
  std::string out;
  pb::TextFormat::PrintToString(config, &out);
  return out;
}

}  // namespace peng
