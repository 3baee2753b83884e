// How a model's n_layer transformer layers are cut into the S = pp x virtual_stages pipeline
// stages (parallel/pipeline/schedule.h): consecutive runs of layers, stage 0 first, each
// stage at least one layer; stage s lives on rank s % pp as its chunk s / pp.
//
// Megatron cuts evenly, or sizes the first and last stage apart
// (--decoder-first/last-pipeline-num-layers), because stage 0 also carries the embedding and
// the last stage the final norm, the LM head and the loss: with a large vocabulary the head
// alone costs several layers. peng takes the same two forms, an explicit list, and a split
// balanced by a cost model (balanced_split).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace peng {

// Layers per stage, stage 0 first.
using StageSplit = std::vector<int>;

// n_layer / stages each; InputError when that does not divide.
StageSplit even_split(int n_layer, int stages);

// The first and/or the last stage given (0: not given), the other stages even; InputError
// when a stage would have no layer or the rest does not divide.
StageSplit first_last_split(int n_layer, int stages, int first, int last);

// "1,3" (parallel.pp_layers); InputError unless it has `stages` entries, each >= 1, summing
// to n_layer.
StageSplit parse_split(const std::string& list, int n_layer, int stages);

// InputError (naming parallel.pp_layers) unless `split` has `stages` entries, each >= 1,
// summing to n_layer.
void check_split(const StageSplit& split, int n_layer, int stages);

// "1,3".
std::string format_split(const StageSplit& split);

// A model's cost per layer and the extra cost of the first and the last stage (the
// embedding; the final norm, head and loss), in any one unit.
struct LayerCosts {
  std::vector<double> layer;
  double first_extra = 0, last_extra = 0;
};

// The cost of each stage of `split`.
std::vector<double> stage_costs(const StageSplit& split, const LayerCosts& costs);

// Integer weights of stage costs, the cheapest stage 100: CheckOptions::stage_cost
// (schedule.h), whose simulation then predicts the bubble of these stages.
std::vector<int64_t> stage_weights(const std::vector<double>& costs);

// "1,1.3" (peng schedule --stage-costs): InputError unless `stages` numbers, each > 0.
std::vector<double> parse_stage_costs(const std::string& list, int stages);

// The split whose most expensive stage is the cheapest possible (among those, the one whose
// stages are closest to even: the smallest sum of squared stage costs).
StageSplit balanced_split(const LayerCosts& costs, int stages);

}  // namespace peng
