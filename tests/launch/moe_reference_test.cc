// The DeepSeek-MoE family's numerics contract: the reference cases of
// make_moe_reference.py (moe-tiny: softmax, normalised top-2 of 8, a shared expert, the first
// layer dense, balance loss alpha 0.01; moe-sigmoid: sigmoid top-4 of 16, selection-bias
// updates, 4 MoE layers, alpha 1e-4; tests/reference/moe-noaux4: bias updates without a
// balance loss, 4 layers) match PyTorch at every step: the loss (1e-4) and gradient norm
// (1e-3) as in the contract, the balance loss (1e-4 relative), the tokens routed to every
// expert of every layer (exactly) and the selection biases after the last step (to f32
// rounding), in one process and under expert parallelism (ep 2, 4; dp 4 x ep 2; with ZeRO 1
// and 2), tensor and sequence parallelism, micro-batching, pipelines (GPipe with the balance
// loss; 1F1B and interleaved without it) and dp 2 x tp 2 x pp 2 x ep 2 on 8 ranks; resumed
// across ep; exported bit for bit; bad layouts and configs refused with one error line.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>

#include "peng/models/registry.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::joined;
using testing::ReferenceRun;

using Case = testing::LayoutCase;

testing::CommandResult run(int np, const std::vector<std::string>& args) {
  return testing::run_case({"", np, {}}, args);
}

fs::path case_dir(const std::string& name) {
  const fs::path own = testing::source_dir() / "tests" / "reference" / name;
  return fs::exists(own) ? own : testing::reference_dir() / name;
}

json expected(const std::string& name) {
  return json::parse(testing::read_file(case_dir(name) / "expected.json"));
}

// The metrics lines with a loss, in step order.
std::vector<json> step_lines(const fs::path& jsonl) {
  std::vector<json> out;
  std::istringstream lines(testing::read_file(jsonl));
  std::string line;
  while (std::getline(lines, line)) {
    json j = json::parse(line);
    if (j.contains("loss")) out.push_back(std::move(j));
  }
  return out;
}

// Steps [first, first + lines) of the reference: loss, norm, balance loss and every expert's
// tokens.
void expect_steps_match(const std::string& name, const std::vector<json>& lines, size_t first) {
  const json e = expected(name);
  const auto& loss = e.at("loss");
  ASSERT_EQ(first + lines.size(), loss.size()) << name;
  for (size_t i = 0; i < lines.size(); ++i) {
    const size_t s = first + i;
    const json& j = lines[i];
    ASSERT_EQ(j.at("step").get<size_t>(), s);
    const double ref_loss = loss[s], ref_norm = e["grad_norm"][s], ref_aux = e["aux_loss"][s];
    EXPECT_NEAR(j["loss"].get<double>(), ref_loss, 1e-4 * ref_loss) << name << " step " << s;
    EXPECT_NEAR(j["grad_norm"].get<double>(), ref_norm, 1e-3 * ref_norm) << name << " step " << s;
    EXPECT_NEAR(j["aux_loss"].get<double>(), ref_aux, 1e-4 * ref_aux) << name << " step " << s;
    const json& loads = e["expert_load"][s];
    ASSERT_EQ(j["moe"].size(), loads.size()) << name << " step " << s;
    for (const json& layer : j["moe"]) {
      const std::string key =
          "model.layers." + std::to_string(layer["layer"].get<int>()) + ".mlp.gate";
      EXPECT_EQ(layer["tokens"], loads.at(key)) << name << " step " << s << " " << key;
      EXPECT_EQ(layer["dropped"], 0);
    }
  }
}

// The selection biases of an exported model against the reference's final ones: sums of
// +-speed, held in f32 (a few ulp of 0.01 apart from the float64 reference).
void expect_final_biases(const std::string& name, const fs::path& exported) {
  const DecoderConfig c = read_hf_config(exported);
  const std::map<std::string, Tensor> weights = load_hf_model(exported, c);
  for (const auto& [key, values] : expected(name).at("final_bias").items()) {
    const Tensor& b = weights.at(key.substr(std::string("model.").size()));
    ASSERT_EQ(b.numel(), int64_t(values.size())) << key;
    for (size_t i = 0; i < values.size(); ++i) {
      EXPECT_NEAR(b.data<float>()[i], values[i].get<double>(), 1e-8) << key << "[" << i << "]";
    }
  }
}

class MoeReference : public ::testing::TestWithParam<Case> {};

TEST_P(MoeReference, MatchesPyTorchEveryStep) {
  const Case& c = GetParam();
  const ReferenceRun ref = testing::load_reference_run(c.name);
  testing::TempDir tmp;
  const testing::CommandResult r =
      run(c.np, joined(joined({"train"}, ref.train_args()),
                       joined(c.flags, {"--quiet", "--metrics-jsonl", (tmp / "m.jsonl").string(),
                                        "--export-to", (tmp / "out").string()})));
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  expect_steps_match(c.name, step_lines(tmp / "m.jsonl"), 0);
  expect_final_biases(c.name, tmp / "out");
}

const std::vector<std::string> kMicro1 = {"--micro-batch-size", "1"};

INSTANTIATE_TEST_SUITE_P(
    Layouts, MoeReference,
    ::testing::Values(
        // one process; micro-batching runs a step's forwards first (the balance loss is over
        // the global batch)
        Case{"moe-tiny"}, Case{"moe-tiny", 1, kMicro1}, Case{"moe-sigmoid"},
        Case{"moe-sigmoid", 1, {"--micro-batch-size", "2"}}, Case{"moe-noaux4"},
        // data and expert parallelism
        Case{"moe-tiny", 2, {"--dp", "2"}}, Case{"moe-tiny", 2, {"--ep", "2"}},
        Case{"moe-sigmoid", 4, {"--ep", "4"}}, Case{"moe-sigmoid", 4, {"--dp", "4", "--ep", "2"}},
        Case{"moe-tiny", 4, {"--ep", "2", "--zero", "1", "--bucket-mb", "0.01"}},
        Case{"moe-sigmoid", 4, {"--ep", "2", "--zero", "2", "--micro-batch-size", "1"}},
        // tensor and sequence parallelism (experts are not split by tp)
        Case{"moe-tiny", 2, {"--tp", "2"}},
        Case{"moe-sigmoid", 4, {"--dp", "2", "--tp", "2", "--ep", "2", "--sequence-parallel"}},
        // pipelines: GPipe keeps the balance loss over the global batch; without one, 1F1B
        // and interleaved schedules are exact too
        Case{"moe-sigmoid", 2, {"--pp", "2", "--pp-schedule", "gpipe", "--micro-batch-size", "2"}},
        Case{"moe-tiny", 2, {"--pp", "2", "--pp-schedule", "gpipe", "--micro-batch-size", "1"}},
        Case{"moe-noaux4", 2, {"--pp", "2", "--micro-batch-size", "2"}},
        Case{"moe-noaux4",
             2,
             {"--pp", "2", "--pp-schedule", "interleaved", "--virtual-stages", "2",
              "--micro-batch-size", "2"}},
        // ZeRO 3: experts gathered over their expert-data-parallel group, the selection
        // biases kept whole on every rank
        Case{"moe-tiny", 2, {"--dp", "2", "--zero", "3"}},
        Case{
            "moe-sigmoid", 4, {"--dp", "4", "--ep", "2", "--zero", "3", "--micro-batch-size", "1"}},
        Case{"moe-noaux4",
             4,
             {"--dp", "2", "--pp", "2", "--ep", "2", "--zero", "3", "--micro-batch-size", "2"}},
        // everything together
        Case{"moe-noaux4",
             8,
             {"--dp", "2", "--tp", "2", "--pp", "2", "--ep", "2", "--sequence-parallel", "--zero",
              "1", "--micro-batch-size", "2"}},
        Case{"moe-sigmoid",
             8,
             {"--dp", "2", "--tp", "2", "--pp", "2", "--ep", "2", "--pp-schedule", "gpipe",
              "--micro-batch-size", "2"}}),
    [](const auto& info) {
      return testing::case_name(info.param.name, info.param.np, info.param.flags);
    });

// A 1F1B pipeline over several micro-batches cannot know the global batch's routing at its
// first backward: the balance loss is then taken per micro-batch (as Megatron-Core does), the
// start-up line says so, and the run stays within the contract's loss and norm tolerances of
// the global-batch reference (alpha 1e-4), routing every token as it does.
TEST(MoeReferenceSchedules, OneFOneBTakesTheBalanceLossPerMicroBatch) {
  const ReferenceRun ref = testing::load_reference_run("moe-sigmoid");
  testing::TempDir tmp;
  const testing::CommandResult r = run(2, joined(joined({"train"}, ref.train_args()),
                                                 {"--pp", "2", "--micro-batch-size", "2",
                                                  "--metrics-jsonl", (tmp / "m.jsonl").string()}));
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_NE(r.stdout_text.find("balance loss 0.0001 over each micro-batch"), std::string::npos)
      << r.stdout_text;
  const std::vector<json> lines = step_lines(tmp / "m.jsonl");
  const json e = expected("moe-sigmoid");
  ASSERT_EQ(lines.size(), e["loss"].size());
  for (size_t s = 0; s < lines.size(); ++s) {
    EXPECT_NEAR(lines[s]["loss"].get<double>(), e["loss"][s].get<double>(),
                1e-4 * e["loss"][s].get<double>());
    EXPECT_NEAR(lines[s]["grad_norm"].get<double>(), e["grad_norm"][s].get<double>(),
                1e-3 * e["grad_norm"][s].get<double>());
  }
}

// Checkpoints saved at ep 4 (ZeRO 1: moments sharded over the expert-data-parallel ranks)
// and at ep 2 (ZeRO 0: each expert written by one of the ranks holding it) resume at ep 2 and
// in one process: the experts are logical tensors; the optimizer moments and the selection
// biases travel with them.
TEST(MoeReferenceResume, ResumesAcrossExpertParallelism) {
  const ReferenceRun ref = testing::load_reference_run("moe-sigmoid");
  using Layout = std::pair<int, std::vector<std::string>>;
  for (const auto& [saved, resumed] : std::vector<std::pair<Layout, Layout>>{
           {{4, {"--ep", "4", "--zero", "1"}}, {2, {"--ep", "2"}}},
           {{4, {"--dp", "4", "--ep", "2"}}, {1, {}}},
           {{4, {"--dp", "4", "--ep", "2", "--zero", "3"}}, {2, {"--dp", "2", "--zero", "3"}}}}) {
    testing::TempDir tmp;
    const std::vector<std::string> ckpt = {"--checkpoint-dir", (tmp / "ckpt").string(), "--quiet"};
    const testing::CommandResult first =
        run(saved.first, joined(joined({"train"}, ref.train_args(4)), joined(ckpt, saved.second)));
    ASSERT_EQ(first.exit_code, 0) << first.stderr_text;
    const testing::CommandResult second = run(
        resumed.first,
        joined(joined({"train"}, ref.train_args()),
               joined(joined(ckpt, resumed.second), {"--metrics-jsonl", (tmp / "m.jsonl").string(),
                                                     "--export-to", (tmp / "out").string()})));
    ASSERT_EQ(second.exit_code, 0) << second.stderr_text;
    EXPECT_NE(second.stdout_text.find("resumed from"), std::string::npos);
    const std::string ep = *(std::find(saved.second.begin(), saved.second.end(), "--ep") + 1);
    EXPECT_NE(second.stdout_text.find(", ep " + ep + ")"), std::string::npos) << second.stdout_text;
    expect_steps_match("moe-sigmoid", step_lines(tmp / "m.jsonl"), 4);
    expect_final_biases("moe-sigmoid", tmp / "out");
  }
}

// With lr 0 the export is the reference folder byte for byte, gathered over ep and tp.
TEST(MoeReferenceExport, GathersExpertsIntoTheReferenceBytes) {
  const ReferenceRun ref = testing::load_reference_run("moe-tiny");
  std::vector<std::string> base = joined({"train"}, ref.train_args(1));
  *(std::find(base.begin(), base.end(), "--lr") + 1) = "0";
  for (const auto& [np, flags] : std::vector<std::pair<int, std::vector<std::string>>>{
           {1, {}}, {4, {"--ep", "4"}}, {4, {"--tp", "2", "--ep", "2"}}}) {
    testing::TempDir tmp;
    const testing::CommandResult r =
        run(np, joined(joined(base, flags), {"--quiet", "--export-to", (tmp / "out").string()}));
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    EXPECT_EQ(testing::read_file(tmp / "out" / "model.safetensors"),
              testing::read_file(case_dir("moe-tiny") / "model.safetensors"))
        << "np " << np;
  }
}

// The routing reaches every sink: per-layer objects in the JSONL (min/max/mean/imbalance
// consistent with the tokens), Prometheus series labelled by layer, the summary's most
// imbalanced layer.
TEST(MoeReferenceMetrics, RoutingInEverySink) {
  const ReferenceRun ref = testing::load_reference_run("moe-sigmoid");
  testing::TempDir tmp;
  const testing::CommandResult r =
      run(1, joined(joined({"train"}, ref.train_args(3)),
                    {"--metrics-jsonl", (tmp / "m.jsonl").string(), "--prometheus-textfile",
                     (tmp / "peng.prom").string(), "--tensorboard", (tmp / "tb").string()}));
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_NE(r.stdout_text.find("experts: 16 per MoE layer, 4 per token, ep 1 (16 per rank) | "
                               "balance loss 0.0001 over the global batch"),
            std::string::npos)
      << r.stdout_text;
  EXPECT_NE(r.stdout_text.find("most imbalanced MoE layer "), std::string::npos);
  for (const json& line : step_lines(tmp / "m.jsonl")) {
    ASSERT_EQ(line["moe"].size(), 4u);
    double aux = 0;
    for (const json& layer : line["moe"]) {
      const std::vector<int64_t> tokens = layer["tokens"];
      const int64_t sum = std::accumulate(tokens.begin(), tokens.end(), int64_t(0));
      EXPECT_EQ(sum, 4 * 8 * 16);  // k x B x T
      EXPECT_EQ(layer["tokens_min"], *std::min_element(tokens.begin(), tokens.end()));
      EXPECT_EQ(layer["tokens_max"], *std::max_element(tokens.begin(), tokens.end()));
      EXPECT_DOUBLE_EQ(layer["imbalance"].get<double>(),
                       layer["tokens_max"].get<double>() / (double(sum) / 16));
      aux += layer["aux_loss"].get<double>();
    }
    EXPECT_DOUBLE_EQ(line["aux_loss"].get<double>(), aux);
  }
  const std::string prom = testing::read_file(tmp / "peng.prom");
  for (const char* metric : {"peng_moe_aux_loss{", "peng_moe_imbalance_ratio{",
                             "peng_moe_expert_tokens_max{", "peng_moe_dropped_tokens_total{"}) {
    EXPECT_NE(prom.find(metric), std::string::npos) << metric;
  }
  EXPECT_NE(prom.find("layer=\"3\"} 0"), std::string::npos) << prom;  // dropped
}

// What cannot split or is not implemented: one error line naming it, non-zero exit.
TEST(MoeReferenceErrors, RefusedWithOneErrorLine) {
  const ReferenceRun ref = testing::load_reference_run("moe-tiny");
  for (const auto& [np, flags, message] :
       std::vector<std::tuple<int, std::vector<std::string>, std::string>>{
           {3,
            {"--ep", "3", "--batch-size", "6"},
            "error: model.experts (8) is not divisible by parallel.ep (3)"},
           {2, {"--ep", "4"}, "error: parallel.ep (4) does not divide parallel.dp (2)"},
           {2,
            {"--tp", "2", "--ep", "2"},
            "error: parallel.ep (2) does not divide parallel.dp (1)"},
           {1,
            {"--experts-per-token", "9"},
            "error: model.experts_per_token = 9 conflicts with"}}) {
    std::vector<std::string> args = joined({"train"}, ref.train_args(1));
    const auto batch = std::find(flags.begin(), flags.end(), "--batch-size");
    if (batch != flags.end()) *(std::find(args.begin(), args.end(), "--batch-size") + 1) = batch[1];
    std::vector<std::string> rest(flags.begin(), batch);
    const testing::CommandResult r = run(np, joined(args, joined(rest, {"--quiet"})));
    EXPECT_NE(r.exit_code, 0);
    const std::vector<std::string> errors = testing::error_lines(r.stderr_text);
    ASSERT_FALSE(errors.empty()) << r.stderr_text;
    EXPECT_NE(errors[0].find(message), std::string::npos) << errors[0];
  }
}

TEST(MoeReferenceErrors, DenseModelHasNoExperts) {
  const ReferenceRun ref = testing::load_reference_run("llama-tiny");
  const testing::CommandResult r =
      run(2, joined(joined({"train"}, ref.train_args(1)), {"--ep", "2", "--quiet"}));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_text.find("error: parallel.ep (2) needs a Mixture-of-Experts model; this "
                               "llama model has no experts"),
            std::string::npos)
      << r.stderr_text;
}

// A config.json asking for routing peng does not implement, k > experts, or a folder missing
// an expert's tensor: one error line naming the key or the tensor.
TEST(MoeReferenceErrors, UnsupportedConfigsAndMissingExperts) {
  const ReferenceRun ref = testing::load_reference_run("moe-tiny");
  const fs::path src = case_dir("moe-tiny");
  const json base = json::parse(testing::read_file(src / "config.json"));
  const auto train_with = [&](const json& config, const fs::path& weights) {
    testing::TempDir tmp;
    fs::create_directories(tmp / "model");
    fs::copy_file(weights, tmp / "model" / "model.safetensors");
    testing::write_file(tmp / "model" / "config.json", config.dump(1));
    std::vector<std::string> args = joined({"train"}, ref.train_args(1));
    *(std::find(args.begin(), args.end(), "--init-from") + 1) = (tmp / "model").string();
    return testing::run_peng(joined(args, {"--quiet"}));
  };
  for (const auto& [key, value, message] : std::vector<std::tuple<std::string, json, std::string>>{
           {"topk_method", "group_limited_greedy",
            "field \"topk_method\" is \"group_limited_greedy\""},
           {"n_group", 4, "field \"n_group\" is > 1; group-limited routing is not implemented"},
           {"kv_lora_rank", 512, "field \"kv_lora_rank\" is set; multi-head latent attention"},
           {"num_experts_per_tok", 9, "field \"num_experts_per_tok\" (9) is more than"},
           {"scoring_func", "sparsemixer", "field \"scoring_func\" is \"sparsemixer\""}}) {
    json config = base;
    config[key] = value;
    const testing::CommandResult r = train_with(config, src / "model.safetensors");
    EXPECT_NE(r.exit_code, 0) << key;
    const std::vector<std::string> errors = testing::error_lines(r.stderr_text);
    ASSERT_EQ(errors.size(), 1u) << r.stderr_text;
    EXPECT_NE(errors[0].find(message), std::string::npos) << errors[0];
  }
  // The weights without layer 1's expert 5 (its entry dropped from the header).
  const std::string bytes = testing::read_file(src / "model.safetensors");
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  json header = json::parse(bytes.substr(8, header_len));
  header.erase("model.layers.1.mlp.experts.5.up_proj.weight");
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t n = text.size();
  testing::TempDir tmp;
  testing::write_file(tmp / "w.safetensors", std::string(reinterpret_cast<const char*>(&n), 8) +
                                                 text + bytes.substr(8 + header_len));
  const testing::CommandResult r = train_with(base, tmp / "w.safetensors");
  EXPECT_NE(r.exit_code, 0);
  const std::vector<std::string> errors = testing::error_lines(r.stderr_text);
  ASSERT_EQ(errors.size(), 1u) << r.stderr_text;
  EXPECT_NE(errors[0].find("model.layers.1.mlp.experts.5.up_proj.weight"), std::string::npos)
      << errors[0];
}

}  // namespace
}  // namespace peng
