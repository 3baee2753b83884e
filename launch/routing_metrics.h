// What users see of a Mixture-of-Experts model's routing, per optimizer step: for each MoE
// layer the auxiliary loss and the tokens per expert over the global batch (min, max, mean
// and the max / mean imbalance; 1 is perfectly balanced), and the dropped tokens (always 0:
// routing is dropless). Written into the metrics JSONL line ("aux_loss", "moe": [...]),
// TensorBoard (moe/layer_L/...) and Prometheus (peng_moe_*{layer="L"}).
#pragma once

#include <string>
#include <vector>

#include "peng/core/parameter.h"
#include "peng/models/nn/routing_stats.h"
#include "peng/parallel/communicator.h"
#include "peng/telemetry/prometheus.h"

namespace peng {

struct LayerLoad {
  int layer = 0;
  double aux_loss = 0;
  int64_t min = 0, max = 0;
  double mean = 0, imbalance = 0;  // imbalance = max / mean
  std::vector<int64_t> tokens;
};

LayerLoad layer_load(const RoutingStats& s);

// Every MoE layer's statistics (layers first_layer .. n_layer - 1) on every rank of `pp`:
// each pipeline rank holds its stages' layers; one sum over pp (null: all are here).
std::vector<RoutingStats> gather_routing(const std::vector<RoutingStats>& mine, int first_layer,
                                         int n_layer, int experts, Communicator* pp);

// The sum of the layers' auxiliary losses.
double total_aux_loss(const std::vector<LayerLoad>& loads);
// TensorBoard scalars (tag, value) and Prometheus metrics of the loads.
std::vector<std::pair<std::string, double>> routing_scalars(const std::vector<LayerLoad>& loads);
std::vector<PromMetric> routing_prometheus(const std::vector<LayerLoad>& loads,
                                           const std::string& job);
// "most imbalanced MoE layer 3 (max/mean 1.42)" over a run's mean imbalance per layer; "" for
// a dense model.
std::string imbalance_summary(const std::vector<std::pair<int, double>>& mean_imbalance);

}  // namespace peng
