#include "peng/launch/commands/cli.h"

#include <CLI/CLI.hpp>
#include <map>

#include "peng/core/backend.h"
#include "peng/launch/commands/certify_command.h"
#include "peng/launch/commands/ckpt_command.h"
#include "peng/launch/commands/data_command.h"
#include "peng/launch/commands/report_command.h"
#include "peng/launch/config.h"
#include "peng/launch/model_setup.h"
#include "peng/launch/trainer.h"
#include "peng/parallel/pipeline/schedule_registry.h"
#include "peng/parallel/pipeline/stage_split.h"

namespace peng {

namespace {

// The config-building options shared by `train` and `export`: an optional CONFIG.pbtxt,
// every shorthand flag of config_flags(), and repeatable --set field=value.
struct ConfigOptions {
  std::string config_file;
  std::map<std::string, std::string> flag_values;  // field -> value
  std::vector<std::string> sets;

  void add_to(CLI::App& cmd) {
    cmd.add_option("config", config_file, "protobuf text config (CONFIG.pbtxt)");
    for (const ConfigFlag& f : config_flags()) {
      if (f.is_switch) {
        cmd.add_flag_callback(
            f.flag, [this, f] { flag_values[f.field] = "true"; }, f.help);
      } else {
        cmd.add_option_function<std::string>(
               f.flag, [this, f](const std::string& v) { flag_values[f.field] = v; }, f.help)
            ->option_text(std::string("  (") + f.field + ")");
      }
    }
    cmd.add_option("--set", sets, "set any config field: --set optim.lr=3e-4 (repeatable)");
  }

  // Defaults, then the file, then the flags, then --set in the order given.
  proto::TrainConfig build() const {
    std::vector<std::string> assignments;
    for (const auto& [field, value] : flag_values) assignments.push_back(field + "=" + value);
    assignments.insert(assignments.end(), sets.begin(), sets.end());
    return build_train_config(config_file, assignments);
  }
};

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App app{"peng: train GPT-style transformers (see README.md)"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "help for every subcommand");

  ConfigOptions train_opts;
  CLI::App* train_cmd = app.add_subcommand("train", "train a model (peng train [CONFIG] ...)");
  train_opts.add_to(*train_cmd);
  train_cmd->callback([&] { train(train_opts.build()); });

  ConfigOptions export_opts;
  std::string export_dir, export_dtype = "f32";
  CLI::App* export_cmd = app.add_subcommand(
      "export",
      "write a model (--init-from DIR, a preset or sizes with a random init) as a "
      "Hugging Face folder");
  export_opts.add_to(*export_cmd);
  export_cmd->add_option("--to", export_dir, "output folder")->required();
  export_cmd->add_option("--dtype", export_dtype, "f32 | bf16 | f16")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}));
  export_cmd->callback([&] {
    proto::TrainConfig c = export_opts.build();
    const uint64_t max_shard =
        parse_shard_size(c.logging().export_max_shard_size(), "--max-shard-size");
    auto model = initial_model(c, resolve_model_config(c), cpu_backend());
    save_hf_model(export_dir, model->arch(), model->state(), parse_dtype(export_dtype), max_shard);
    std::printf("wrote %s (config.json and weights, %s)\n", export_dir.c_str(),
                export_dtype.c_str());
  });

  add_data_command(app);
  add_ckpt_command(app);
  add_report_command(app);
  add_keygen_command(app);
  add_certify_command(app);

  // `peng schedule`: a pipeline schedule printed and checked before anyone runs it.
  std::string sched_kind = "1f1b";
  int sched_pp = 2, sched_v = 1, sched_m = 4;
  bool sched_compute_only = false;
  std::string sched_costs;
  CLI::App* sched_cmd = app.add_subcommand(
      "schedule", "print a pipeline schedule's per-rank actions and check it (deadlock, bubble)");
  sched_cmd->add_option("--pp-schedule", sched_kind, "gpipe | 1f1b | interleaved");
  sched_cmd->add_option("--pp", sched_pp, "pipeline ranks");
  sched_cmd->add_option("--virtual-stages", sched_v, "model chunks per rank");
  sched_cmd->add_option("--micro-batches", sched_m, "micro-batches per step");
  sched_cmd->add_flag("--computes-only", sched_compute_only, "hide sends and receives");
  sched_cmd->add_option("--stage-costs", sched_costs,
                        "relative compute cost of each stage, stage 0 first (\"1,1.3\"): the "
                        "bubble predicted with them (peng train prints a model's)");
  sched_cmd->callback([&] {
    const std::vector<int64_t> weights =
        sched_costs.empty() ? std::vector<int64_t>{}
                            : stage_weights(parse_stage_costs(sched_costs, sched_pp * sched_v));
    const Schedule s = build_schedule(sched_kind, sched_pp, sched_v, sched_m);
    std::printf("%s", format_schedule(s, !sched_compute_only).c_str());
    const ScheduleCheck check =
        check_schedule(s, sched_pp, sched_v, sched_m, {.send_mode = SendMode::kBuffered});
    PENG_CHECK(check.ok, "schedule check failed: ", check.error);
    std::printf(
        "check: ok (every forward before its backward, transfers matched, no deadlock)"
        " | bubble with backward = 2 x forward: %.3f of rank-time\n",
        check.idle_fraction());
    if (!weights.empty()) {
      const ScheduleCheck weighted = check_schedule(
          s, sched_pp, sched_v, sched_m, {.send_mode = SendMode::kBuffered, .stage_cost = weights});
      std::printf("stage costs %s: predicted bubble %.3f of rank-time\n", sched_costs.c_str(),
                  weighted.idle_fraction());
    }
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One `error:` line (the contract), then where to look for usage.
    std::fprintf(stderr, "error: %s (see peng %s --help)\n", e.what(),
                 app.get_subcommands().empty() ? "" : app.get_subcommands()[0]->get_name().c_str());
    return e.get_exit_code() ? e.get_exit_code() : 2;
  }
  return 0;
}

}  // namespace peng
