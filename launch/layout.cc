#include "peng/launch/layout.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "peng/core/error.h"
#include "peng/launch/model_setup.h"

namespace peng {

StageSplit stage_split(const proto::ParallelConfig& pc, const DecoderConfig& model, int64_t seq_len,
                       int stages) {
  if (!pc.pp_layers().empty()) return parse_split(pc.pp_layers(), model.n_layer, stages);
  if (pc.pp_balance() == "auto") return balanced_split(layer_costs(model, seq_len), stages);
  return first_last_split(model.n_layer, stages, pc.pp_first_stage_layers(),
                          pc.pp_last_stage_layers());
}

namespace {

std::string fixed(const char* format, double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

// The schedule's idle share with each stage's computes weighted by its cost.
double predicted_bubble(const TrainLayout& l, const std::vector<double>& costs) {
  const CheckOptions options{.send_mode = SendMode::kBuffered, .stage_cost = stage_weights(costs)};
  return check_schedule(l.schedule, l.mesh.pp, l.virtual_stages, int(l.micro_steps), options)
      .idle_fraction();
}

}  // namespace

std::string describe_stages(const TrainLayout& l, const DecoderConfig& model, int64_t seq_len) {
  const LayerCosts costs = layer_costs(model, seq_len);
  const std::vector<double> mine = stage_costs(l.split, costs);
  const double least = *std::min_element(mine.begin(), mine.end());
  std::string line = "pipeline stages: layers " + format_split(l.split) + " | forward cost";
  for (double c : mine) line += fixed(" %.2f", c / least);
  line += " (relative) | predicted bubble" + fixed(" %.3f", predicted_bubble(l, mine));
  const int stages = l.mesh.pp * l.virtual_stages;
  if (model.n_layer % stages == 0 && l.split != even_split(model.n_layer, stages)) {
    const double even = predicted_bubble(l, stage_costs(even_split(model.n_layer, stages), costs));
    line += " (even split" + fixed(" %.3f", even) + ")";
  }
  return line;
}

TrainLayout resolve_layout(const proto::TrainConfig& config, int world_size,
                           const DecoderConfig& model) {
  const auto& tc = config.training();
  const auto& pc = config.parallel();
  TrainLayout l;
  l.mesh = resolve_mesh(world_size, pc.dp(), pc.tp(), pc.pp());
  const int64_t B = tc.batch_size(), T = tc.seq_len();
  PENG_INPUT_CHECK(B % l.mesh.dp == 0, "training.batch_size (", B,
                   ") is not divisible by parallel.dp (", l.mesh.dp, ")");
  l.local_batch = B / l.mesh.dp;
  l.micro = tc.micro_batch_size() > 0 ? tc.micro_batch_size() : l.local_batch;
  PENG_INPUT_CHECK(l.local_batch % l.micro == 0, "training.batch_size (", B,
                   ") is not divisible by parallel.dp x training.micro_batch_size (", l.mesh.dp,
                   " x ", l.micro, ")");
  l.micro_steps = l.local_batch / l.micro;
  l.sequence_parallel = pc.sequence_parallel() && l.mesh.tp > 1;
  PENG_INPUT_CHECK(!l.sequence_parallel || (l.micro * T) % l.mesh.tp == 0,
                   "parallel.sequence_parallel: a micro-batch's ", l.micro, " x ", T,
                   " positions do not split over parallel.tp (", l.mesh.tp, ")");
  model.check_tensor_parallel(l.mesh.tp);
  l.mesh.ep = pc.ep() > 0 ? pc.ep() : 1;
  PENG_INPUT_CHECK(pc.ep() >= 0 && l.mesh.dp % l.mesh.ep == 0, "parallel.ep (", pc.ep(),
                   ") does not divide parallel.dp (", l.mesh.dp,
                   "): expert-parallel ranks are taken out of data parallelism");
  model.check_expert_parallel(l.mesh.ep);
  PENG_INPUT_CHECK(T <= model.max_seq_len, "training.seq_len (", T,
                   ") exceeds the model's maximum sequence length (model.max_seq_len = ",
                   model.max_seq_len, ")");
  l.pp_schedule = pc.pp_schedule();
  l.virtual_stages = pc.virtual_stages();
  const int m = int(l.micro_steps);
  validate_pipeline(l.pp_schedule, model.n_layer, l.mesh.pp, l.virtual_stages, m);
  l.split = stage_split(pc, model, T, l.mesh.pp * l.virtual_stages);
  if (l.pipelined()) {  // checked for deadlock freedom before anything runs
    l.schedule = build_schedule(l.pp_schedule, l.mesh.pp, l.virtual_stages, m);
  }
  return l;
}

}  // namespace peng
