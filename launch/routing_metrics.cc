#include "peng/launch/routing_metrics.h"

#include <algorithm>
#include <cstdio>

namespace peng {

LayerLoad layer_load(const RoutingStats& s) {
  LayerLoad l{.layer = s.layer, .aux_loss = s.aux_loss, .tokens = s.tokens};
  if (s.tokens.empty()) return l;
  const auto [lo, hi] = std::minmax_element(s.tokens.begin(), s.tokens.end());
  l.min = *lo;
  l.max = *hi;
  int64_t sum = 0;
  for (int64_t t : s.tokens) sum += t;
  l.mean = double(sum) / double(s.tokens.size());
  l.imbalance = l.mean > 0 ? double(l.max) / l.mean : 0;
  return l;
}

std::vector<RoutingStats> gather_routing(const std::vector<RoutingStats>& mine, int first_layer,
                                         int n_layer, int experts, Communicator* pp) {
  if (!pp) return mine;
  // Row of MoE layer l (l - first_layer): [1 where held, aux, tokens of each expert].
  const int64_t width = experts + 2, rows = n_layer - first_layer;
  Tensor table = Tensor::zeros({rows * width}, DType::kF64);
  double* t = table.data<double>();
  for (const RoutingStats& s : mine) {
    double* row = t + (s.layer - first_layer) * width;
    row[0] = 1;
    row[1] = s.aux_loss;
    for (int e = 0; e < experts; ++e) row[2 + e] = double(s.tokens[size_t(e)]);
  }
  pp->all_reduce(table, ReduceOp::kSum)->wait();
  std::vector<RoutingStats> all;
  for (int64_t r = 0; r < rows; ++r) {
    const double* row = t + r * width;
    if (row[0] == 0) continue;
    RoutingStats s{.layer = int(first_layer + r), .aux_loss = row[1]};
    for (int e = 0; e < experts; ++e) s.tokens.push_back(int64_t(row[2 + e]));
    all.push_back(std::move(s));
  }
  return all;
}

double total_aux_loss(const std::vector<LayerLoad>& loads) {
  double sum = 0;
  for (const LayerLoad& l : loads) sum += l.aux_loss;
  return sum;
}

std::vector<std::pair<std::string, double>> routing_scalars(const std::vector<LayerLoad>& loads) {
  std::vector<std::pair<std::string, double>> out;
  if (!loads.empty()) out.emplace_back("moe/aux_loss", total_aux_loss(loads));
  for (const LayerLoad& l : loads) {
    const std::string p = "moe/layer_" + std::to_string(l.layer) + "/";
    out.emplace_back(p + "aux_loss", l.aux_loss);
    out.emplace_back(p + "tokens_min", double(l.min));
    out.emplace_back(p + "tokens_max", double(l.max));
    out.emplace_back(p + "imbalance", l.imbalance);
  }
  return out;
}

std::vector<PromMetric> routing_prometheus(const std::vector<LayerLoad>& loads,
                                           const std::string& job) {
  if (loads.empty()) return {};
  PromMetric aux{"peng_moe_aux_loss", "MoE load-balancing loss of the last step", "gauge", {}};
  PromMetric imb{
      "peng_moe_imbalance_ratio", "max / mean tokens per expert, last step", "gauge", {}};
  PromMetric lo{
      "peng_moe_expert_tokens_min", "fewest tokens an expert got, last step", "gauge", {}};
  PromMetric hi{"peng_moe_expert_tokens_max", "most tokens an expert got, last step", "gauge", {}};
  PromMetric dropped{
      "peng_moe_dropped_tokens_total", "tokens dropped by routing (dropless: 0)", "counter", {}};
  for (const LayerLoad& l : loads) {
    const std::vector<std::pair<std::string, std::string>> labels = {
        {"job", job}, {"layer", std::to_string(l.layer)}};
    aux.series.push_back({labels, l.aux_loss});
    imb.series.push_back({labels, l.imbalance});
    lo.series.push_back({labels, double(l.min)});
    hi.series.push_back({labels, double(l.max)});
    dropped.series.push_back({labels, 0.0});
  }
  return {aux, imb, lo, hi, dropped};
}

std::string imbalance_summary(const std::vector<std::pair<int, double>>& mean_imbalance) {
  if (mean_imbalance.empty()) return "";
  const auto worst =
      std::max_element(mean_imbalance.begin(), mean_imbalance.end(),
                       [](const auto& a, const auto& b) { return a.second < b.second; });
  char buf[96];
  std::snprintf(buf, sizeof buf, "most imbalanced MoE layer %d (max/mean %.2f)", worst->first,
                worst->second);
  return buf;
}

}  // namespace peng
