#include "peng/launch/commands/report_command.h"

#include <cstdio>
#include <filesystem>
#include <memory>

#include <CLI/CLI.hpp>

#include "peng/accounting/ledger.h"
#include "peng/accounting/report_html.h"
#include "peng/core/error.h"
#include "peng/core/io/atomic_file.h"

namespace peng {

report::Ledger load_ledger(const std::string& path, const std::string& key, bool read_records) {
  PENG_INPUT_CHECK(std::filesystem::is_regular_file(path), path, ": no such ledger file");
  report::Ledger l;
  // One pass: the records read are exactly the ones verified (and `head` covers them).
  const ledger::VerifyResult v = ledger::verify(path, key, read_records ? &l.lines : nullptr);
  if (!v.ok && v.first_bad >= 0) {
    throw InputError(
        detail::concat(path, ": record ", v.first_bad, " (line ", v.first_bad + 1, "): ", v.error));
  }
  PENG_INPUT_CHECK(v.ok, path, ": ", v.error);
  l.path = path;
  l.records = v.records;
  l.head = v.head;
  l.hmac_checked = v.hmac_checked;
  return l;
}

std::string verify_line(const report::Ledger& l) {
  return l.path + ": ok, " + std::to_string(l.records) + " record" + (l.records == 1 ? "" : "s") +
         ", head " + l.head + (l.hmac_checked ? ", HMACs checked" : "");
}

void run_report_command(const ReportCommandOptions& o) {
  report::Options opts;
  if (!o.from.empty()) opts.from = report::parse_time(o.from, "--from");
  if (!o.to.empty()) opts.to = report::parse_time(o.to, "--to");
  PENG_INPUT_CHECK(!opts.from || !opts.to || *opts.from < *opts.to, "--from ", o.from,
                   " is not before --to ", o.to);
  opts.project = o.project;
  opts.period = report::parse_period(o.period);
  const std::string key = o.ledger_key.empty() ? "" : ledger::read_key_file(o.ledger_key);

  if (o.verify) {
    for (const std::string& path : o.ledgers) {
      std::printf("%s\n", verify_line(load_ledger(path, key, false)).c_str());
      std::fflush(stdout);
    }
    return;
  }
  std::vector<report::Ledger> ledgers;
  for (const std::string& path : o.ledgers) {
    ledgers.push_back(load_ledger(path, key, true));
    // The same ledger twice (or a copy of it) would count every job twice.
    for (size_t i = 0; i + 1 < ledgers.size(); ++i) {
      const bool same = std::filesystem::equivalent(ledgers[i].path, path) ||
                        (ledgers[i].records > 0 && ledgers[i].head == ledgers.back().head);
      PENG_INPUT_CHECK(!same, path, " is the same ledger as ", ledgers[i].path,
                       " (its records would count twice)");
    }
  }
  const report::Report r = report::build_report(std::move(ledgers), opts);
  if (!o.csv.empty()) write_file_atomic(o.csv, report::to_csv(r));
  if (!o.json.empty()) write_file_atomic(o.json, report::to_json(r).dump(2) + "\n");
  if (!o.html.empty()) write_file_atomic(o.html, report::to_html(r));
  std::printf("%s", report::to_text(r).c_str());
}

void add_report_command(CLI::App& app) {
  auto o = std::make_shared<ReportCommandOptions>();
  CLI::App* cmd = app.add_subcommand(
      "report", "verify usage ledgers and total their jobs' device-hours, energy and MFU");
  cmd->add_option("ledger", o->ledgers, "usage ledger (JSON lines)")->required();
  cmd->add_option("--from", o->from, "window start: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)");
  cmd->add_option("--to", o->to, "window end (exclusive), as --from");
  cmd->add_option_function<std::string>(
      "--project", [o](const std::string& p) { o->project = p; }, "only this project");
  cmd->add_option("--period", o->period, "day | month: the period group's key")
      ->check(CLI::IsMember({"day", "month"}))
      ->capture_default_str();
  cmd->add_option("--csv", o->csv, "write the groups as CSV");
  cmd->add_option("--json", o->json, "write the report as JSON");
  cmd->add_option("--html", o->html, "write a self-contained HTML page with charts");
  cmd->add_flag("--verify", o->verify,
                "only verify the ledgers and print their record counts and head hashes");
  cmd->add_option("--ledger-key", o->ledger_key, "key file: check every record's HMAC");
  cmd->callback([o] { run_report_command(*o); });
}

}  // namespace peng
