#include "peng/launch/layout.h"

#include "peng/core/error.h"

namespace peng {

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
  if (l.pipelined()) {  // checked for deadlock freedom before anything runs
    l.schedule = build_schedule(l.pp_schedule, l.mesh.pp, l.virtual_stages, m);
  }
  return l;
}

}  // namespace peng
