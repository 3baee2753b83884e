#include "peng/launch/gradient_sync.h"

#include <algorithm>

namespace peng {

std::vector<std::string> tie_groups(const std::vector<Parameter>& table) {
  std::vector<std::string> out;
  for (const Parameter& p : table) {
    if (!p.tie_group.empty() && std::find(out.begin(), out.end(), p.tie_group) == out.end()) {
      out.push_back(p.tie_group);
    }
  }
  return out;
}

GradientSync::GradientSync(ParameterSet& params, const std::vector<std::string>& groups,
                           Communicator* tp, Communicator* pp,
                           const std::vector<FlatSpan>& grad_spans) {
  for (const std::string& name : groups) {  // the same names in the same order on every rank
    if (!pp) break;
    Tie tie;
    for (Parameter& p : params.all()) {
      if (p.tie_group == name) tie.copies.push_back(&p);
    }
    const bool holds = !tie.copies.empty();
    tie.group = pp->split(holds ? 0 : 1, pp->rank(), "tie-" + name);  // collective over pp
    if (holds) ties_.push_back(std::move(tie));
  }
  const std::vector<ParamSegment> segments = split_at_parameters(params, grad_spans);
  const int tp_rank = tp ? tp->rank() : 0;
  for (const Parameter& p : params.all()) {  // every tp rank holds the same parameters
    for (const ReplicaRange& r : replica_ranges(p)) {
      if (!replica_groups_.count(r.replicas)) {
        replica_groups_[r.replicas] =
            tp->split(tp_rank / r.replicas, tp_rank, "tp-replicas");  // collective over tp
      }
    }
  }
  const auto add = [&](const std::vector<ParamSegment>& parts, auto group_of) {
    for (const ParamSegment& s : parts) partial_.push_back({s.span, group_of(*s.param)});
  };
  if (tp) {
    add(restrict_segments(segments,
                          [](const Parameter& p) {
                            return p.tp_partial_grad ? std::vector<LocalRange>{{0, p.numel}}
                                                     : std::vector<LocalRange>{};
                          }),
        [&](const Parameter&) { return tp; });
    for (const auto& [replicas, group] : replica_groups_) {
      add(restrict_segments(segments,
                            [&, n = replicas](const Parameter& p) {
                              std::vector<LocalRange> out;
                              for (const ReplicaRange& r : replica_ranges(p)) {
                                if (r.replicas == n) out.push_back(r.range);
                              }
                              return out;
                            }),
          [&, g = group.get()](const Parameter&) { return g; });
    }
  }
  counted_ =
      restrict_segments(segments, [&](const Parameter& p) { return owned_ranges(p, tp_rank); });
}

void GradientSync::sum_tied_gradients(const TensorOf& grad_of) {
  for (Tie& tie : ties_) {
    for (Parameter* p : tie.copies) {
      Tensor g = grad_of ? grad_of(*p) : p->grad;
      tie.group->all_reduce(g, ReduceOp::kSum)->wait();
    }
  }
}

void GradientSync::sum_partial_gradients(Tensor& grads) {
  for (const Partial& s : partial_) {
    Tensor g = grads.flat_view(s.span.state_offset, {s.span.numel});
    s.group->all_reduce(g, ReduceOp::kSum)->wait();
  }
}

void GradientSync::broadcast_tied_values(const TensorOf& value_of) {
  for (Tie& tie : ties_) {
    for (Parameter* p : tie.copies) {
      Tensor v = value_of ? value_of(*p) : p->value;
      tie.group->broadcast(v, 0)->wait();
    }
  }
}

}  // namespace peng
