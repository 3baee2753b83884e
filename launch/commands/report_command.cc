#include "peng/launch/commands/report_command.h"

#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include <CLI/CLI.hpp>

#include "peng/accounting/ledger.h"
#include "peng/accounting/report_html.h"
#include "peng/core/error.h"
#include "peng/core/io/atomic_file.h"

namespace peng {

report::Ledger load_ledger(const std::string& path, const std::string& key, bool read_records,
                           const ledger::PublicKey* public_key) {
  PENG_INPUT_CHECK(std::filesystem::is_regular_file(path), path, ": no such ledger file");
  report::Ledger l;
  // One pass: the records read are exactly the ones verified (and `head` covers them).
  const ledger::VerifyResult v =
      ledger::verify(path, key, read_records ? &l.lines : nullptr, public_key);
  if (!v.ok && v.first_bad >= 0) {
    throw InputError(
        detail::concat(path, ": record ", v.first_bad, " (line ", v.first_bad + 1, "): ", v.error));
  }
  PENG_INPUT_CHECK(v.ok, path, ": ", v.error);
  l.path = path;
  l.records = v.records;
  l.head = v.head;
  l.hmac_checked = v.hmac_checked;
  l.key_id = v.key_id;
  return l;
}

std::string verify_line(const report::Ledger& l) {
  return l.path + ": ok, " + std::to_string(l.records) + " record" + (l.records == 1 ? "" : "s") +
         ", head " + l.head + (l.hmac_checked ? ", HMACs checked" : "") +
         (l.key_id.empty() ? "" : ", Ed25519 signatures checked (key " + l.key_id + ")");
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
  PENG_INPUT_CHECK(key.empty() || o.public_key.empty(),
                   "--ledger-key (HMAC) and --public-key (Ed25519) never check one ledger "
                   "together: give the one its records were signed with");
  std::optional<ledger::PublicKey> public_key;
  if (!o.public_key.empty()) public_key = ledger::PublicKey::load(o.public_key);
  const ledger::PublicKey* pub = public_key ? &*public_key : nullptr;

  if (o.verify) {
    for (const std::string& path : o.ledgers) {
      std::printf("%s\n", verify_line(load_ledger(path, key, false, pub)).c_str());
      std::fflush(stdout);
    }
    return;
  }
  std::vector<report::Ledger> ledgers;
  for (const std::string& path : o.ledgers) {
    ledgers.push_back(load_ledger(path, key, true, pub));
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
  cmd->add_option("--public-key", o->public_key,
                  "Ed25519 public key (PEM): check every record's signature");
  cmd->callback([o] { run_report_command(*o); });
}

void add_keygen_command(CLI::App& app) {
  auto prefix = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "keygen",
      "write an Ed25519 key pair for signed ledgers: PREFIX.pem (private, 0600) and "
      "PREFIX.pub.pem (give it to whoever verifies)");
  cmd->add_option("--out", *prefix, "path prefix of the two files")->required();
  cmd->callback([prefix] {
    const std::string id = ledger::write_key_pair(*prefix);
    std::printf("wrote %s.pem (private key, mode 0600) and %s.pub.pem (public key), key id %s\n",
                prefix->c_str(), prefix->c_str(), id.c_str());
  });
}

}  // namespace peng
