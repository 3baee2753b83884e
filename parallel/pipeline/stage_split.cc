#include "peng/parallel/pipeline/stage_split.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <numeric>
#include <utility>

#include "peng/core/error.h"

namespace peng {

StageSplit even_split(int n_layer, int stages) {
  PENG_INPUT_CHECK(stages >= 1 && n_layer % stages == 0, "model.n_layer (", n_layer,
                   ") is not divisible by pp x virtual stages (", stages,
                   "): give the stages' layers with --pp-layers, or --pp-balance auto");
  return StageSplit(size_t(stages), n_layer / stages);
}

StageSplit first_last_split(int n_layer, int stages, int first, int last) {
  PENG_INPUT_CHECK(first >= 0 && last >= 0, "parallel.pp_first/last_stage_layers must be >= 0");
  if (first == 0 && last == 0) return even_split(n_layer, stages);
  PENG_INPUT_CHECK(stages >= 2 || first + last == 0,
                   "parallel.pp_first/last_stage_layers need at least 2 pipeline stages");
  const int inner = stages - (first > 0) - (last > 0);
  const int rest = n_layer - first - last;
  PENG_INPUT_CHECK(rest >= inner && (inner == 0 ? rest == 0 : rest % inner == 0), "model.n_layer (",
                   n_layer, ") minus the first stage's ", first, " and the last stage's ", last,
                   " layers leaves ", rest, " for ", inner,
                   " other stages: not an equal number of at least 1 each");
  StageSplit split(size_t(stages), inner > 0 ? rest / inner : 0);
  if (first > 0) split.front() = first;
  if (last > 0) split.back() = last;
  return split;
}

StageSplit parse_split(const std::string& list, int n_layer, int stages) {
  StageSplit split;
  size_t at = 0;
  while (at <= list.size()) {
    const size_t comma = std::min(list.find(',', at), list.size());
    int n = 0;
    const auto [end, ec] = std::from_chars(list.data() + at, list.data() + comma, n);
    PENG_INPUT_CHECK(ec == std::errc() && end == list.data() + comma, "parallel.pp_layers '", list,
                     "': a comma list of layers per stage, each at least 1");
    split.push_back(n);
    at = comma + 1;
  }
  check_split(split, n_layer, stages);
  return split;
}

void check_split(const StageSplit& split, int n_layer, int stages) {
  const std::string list = format_split(split);
  for (int n : split) {
    PENG_INPUT_CHECK(n >= 1, "parallel.pp_layers '", list,
                     "': a comma list of layers per stage, each at least 1");
  }
  PENG_INPUT_CHECK(int(split.size()) == stages, "parallel.pp_layers '", list, "' lists ",
                   split.size(), " stages, the pipeline has ", stages, " (pp x virtual stages)");
  const int sum = std::accumulate(split.begin(), split.end(), 0);
  PENG_INPUT_CHECK(sum == n_layer, "parallel.pp_layers '", list, "' holds ", sum,
                   " layers, the model has ", n_layer);
}

std::string format_split(const StageSplit& split) {
  std::string out;
  for (int n : split) {
    if (!out.empty()) out += ',';
    out += std::to_string(n);
  }
  return out;
}

std::vector<double> stage_costs(const StageSplit& split, const LayerCosts& costs) {
  std::vector<double> out;
  size_t layer = 0;
  for (size_t s = 0; s < split.size(); ++s) {
    double c = s == 0 ? costs.first_extra : 0.0;
    if (s + 1 == split.size()) c += costs.last_extra;
    for (int i = 0; i < split[s]; ++i) c += costs.layer.at(layer++);
    out.push_back(c);
  }
  return out;
}

std::vector<int64_t> stage_weights(const std::vector<double>& costs) {
  const double least = *std::min_element(costs.begin(), costs.end());
  std::vector<int64_t> out;
  for (double c : costs) out.push_back(int64_t(std::llround(100 * c / least)));
  return out;
}

std::vector<double> parse_stage_costs(const std::string& list, int stages) {
  std::vector<double> costs;
  size_t at = 0;
  while (at <= list.size()) {
    const size_t comma = std::min(list.find(',', at), list.size());
    double c = 0;
    const auto [end, ec] = std::from_chars(list.data() + at, list.data() + comma, c);
    PENG_INPUT_CHECK(ec == std::errc() && end == list.data() + comma && c > 0, "--stage-costs '",
                     list, "': a comma list of positive numbers, one per stage");
    costs.push_back(c);
    at = comma + 1;
  }
  PENG_INPUT_CHECK(int(costs.size()) == stages, "--stage-costs '", list, "' lists ", costs.size(),
                   " stages, the pipeline has ", stages, " (pp x virtual stages)");
  return costs;
}

StageSplit balanced_split(const LayerCosts& costs, int stages) {
  const int n = int(costs.layer.size());
  PENG_INPUT_CHECK(stages >= 1 && n >= stages, "model.n_layer (", n, ") is less than the ", stages,
                   " pipeline stages (pp x virtual stages): every stage needs a layer");
  std::vector<double> prefix(size_t(n) + 1, 0.0);
  for (int i = 0; i < n; ++i) prefix[size_t(i) + 1] = prefix[size_t(i)] + costs.layer[size_t(i)];
  // best[s][i]: (largest stage cost, sum of squared stage costs) of the first i layers in
  // stages 0..s; from[s][i]: where stage s starts in it.
  using Score = std::pair<double, double>;
  const Score none{std::numeric_limits<double>::infinity(), 0};
  std::vector<std::vector<Score>> best(size_t(stages), std::vector<Score>(size_t(n) + 1, none));
  std::vector<std::vector<int>> from(size_t(stages), std::vector<int>(size_t(n) + 1, 0));
  for (int s = 0; s < stages; ++s) {
    for (int i = s + 1; i <= n - (stages - 1 - s); ++i) {
      // Stage 0 starts at layer 0; stage s > 0 after stages 0..s-1 hold a layer each.
      for (int j = s; j < (s == 0 ? 1 : i); ++j) {
        if (s > 0 && best[size_t(s) - 1][size_t(j)] == none) continue;
        double c = prefix[size_t(i)] - prefix[size_t(j)];
        if (s == 0) c += costs.first_extra;
        if (s == stages - 1) c += costs.last_extra;
        const Score before = s > 0 ? best[size_t(s) - 1][size_t(j)] : Score{0, 0};
        const Score score{std::max(before.first, c), before.second + c * c};
        if (score < best[size_t(s)][size_t(i)]) {
          best[size_t(s)][size_t(i)] = score;
          from[size_t(s)][size_t(i)] = j;
        }
      }
    }
  }
  StageSplit split(static_cast<size_t>(stages));
  for (int s = stages - 1, i = n; s >= 0; --s) {
    const int j = from[size_t(s)][size_t(i)];
    split[size_t(s)] = i - j;
    i = j;
  }
  return split;
}

}  // namespace peng
