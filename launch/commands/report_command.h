// `peng report`: checks usage ledgers (accounting/ledger.h) and totals what their jobs used
// (accounting/report.h, accounting/report_html.h).
//
//   peng report LEDGER... [--from DATE] [--to DATE] [--project P] [--period day|month]
//               [--csv FILE] [--json FILE] [--html FILE] [--verify] [--ledger-key FILE]
//
// Every LEDGER is verified first (hash chain; with --ledger-key also every record's HMAC).
//   --verify  prints one line per ledger, "LEDGER: ok, N records, head <sha256>" (plus
//             ", HMACs checked" with a key), and nothing else.
//   otherwise the records of the window [--from, --to) (dates YYYY-MM-DD mean 00:00 UTC,
//             or YYYY-MM-DDTHH:MM:SSZ) and of --project go into the report: the text tables
//             on stdout, and each of --csv, --json, --html written (atomically) when given.
// A ledger that does not verify throws peng::InputError "LEDGER: record N (line N+1):
// <what>" (no report is written); a missing ledger "LEDGER: no such ledger file"; a bad
// date or period names its flag. main() turns these into one `error:` line and exit 1.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "peng/accounting/report.h"
#include "peng/accounting/signing.h"

namespace CLI {
class App;
}

namespace peng {

struct ReportCommandOptions {
  std::vector<std::string> ledgers;
  std::string from, to;                // empty: open end
  std::optional<std::string> project;  // only this project
  std::string period = "month";        // day | month
  std::string csv, json, html;         // outputs; empty: not written
  bool verify = false;                 // only verify and print the ledgers' heads
  std::string ledger_key;              // key file; empty: HMACs not checked
  std::string public_key;              // Ed25519 public key; empty: signatures not checked
};

// Verifies the ledger at `path` (HMACs too when `key` is not empty, Ed25519 signatures with
// `public_key`) and, with `read_records`, reads its records (those that were verified).
// Throws as described above.
report::Ledger load_ledger(const std::string& path, const std::string& key, bool read_records,
                           const ledger::PublicKey* public_key = nullptr);

// `peng keygen --out PREFIX`: an Ed25519 key pair for signed ledgers.
void add_keygen_command(CLI::App& app);

// The --verify line of a verified ledger (without the line end).
std::string verify_line(const report::Ledger& ledger);

// Runs `peng report` as described above: prints to stdout, writes the outputs.
void run_report_command(const ReportCommandOptions& o);

// Registers the `report` subcommand on app.
void add_report_command(CLI::App& app);

}  // namespace peng
