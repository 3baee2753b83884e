// GradientSync: what makes a model's gradients whole after backward and keeps its copies
// identical after the update, driven only by the parameters' roles (core/parameter.h):
//   - tied copies (Parameter::tie_group, pipeline ranks holding the same tensor): their
//     gradients are summed over the ranks holding them, and after the optimizer the
//     primary's values (lowest stage) are broadcast, so the copies stay bit-identical;
//   - tp-partial gradients (Parameter::tp_partial_grad): summed over tp;
//   - replicated pieces of a split (replica_ranges(): GQA kv heads when tp > n_kv_head):
//     summed over the ranks holding the same piece;
//   - norms count each element once (owned_ranges()).
// Collective: built on every rank of the job in the same order (it splits communicators of
// the pp and tp groups); each call is collective over the groups it uses.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "peng/core/parameter.h"
#include "peng/parallel/communicator.h"

namespace peng {

class GradientSync {
 public:
  // `tie_groups`: every tie group of the whole model (the same list on every rank);
  // `grad_spans`: where the optimizer's gradients sit (the flat buffer, or ZeRO shards).
  GradientSync(ParameterSet& params, const std::vector<std::string>& tie_groups, Communicator* tp,
               Communicator* pp, const std::vector<FlatSpan>& grad_spans);

  // Where a tied copy's gradient or value is summed or broadcast (default: its own; ZeRO-3:
  // its chunk of a shard, the same elements on every copy's rank).
  using TensorOf = std::function<Tensor(const Parameter&)>;
  // Sums tied copies' gradients (in the flat gradient buffer, before the dp reduction).
  void sum_tied_gradients(const TensorOf& grad_of = {});
  // Sums the partial gradients in `grads` (laid out like grad_spans).
  void sum_partial_gradients(Tensor& grads);
  // After the update: the primary copy's values on every copy.
  void broadcast_tied_values(const TensorOf& value_of = {});
  // The gradient segments this rank counts in the global norm (each element once).
  const std::vector<ParamSegment>& counted() const { return counted_; }

 private:
  struct Tie {
    std::unique_ptr<Communicator> group;  // pp ranks holding a copy; null on the others
    std::vector<Parameter*> copies;       // this rank's
  };
  struct Partial {
    FlatSpan span;  // in the gradients' layout
    Communicator* group;
  };
  std::vector<Tie> ties_;
  std::map<int, std::unique_ptr<Communicator>> replica_groups_;  // by replica count
  std::vector<Partial> partial_;
  std::vector<ParamSegment> counted_;
};

// Every tie group of a model's parameter table, in order of first appearance.
std::vector<std::string> tie_groups(const std::vector<Parameter>& table);

}  // namespace peng
