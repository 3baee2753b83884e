#include "peng/launch/commands/certify_command.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>

#include <CLI/CLI.hpp>

#include "peng/accounting/certificate.h"
#include "peng/accounting/certificate_html.h"
#include "peng/accounting/report.h"
#include "peng/core/error.h"
#include "peng/core/io/atomic_file.h"
#include "peng/launch/commands/report_command.h"

namespace peng {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Every ledger verified under `key`, with its records.
std::vector<report::Ledger> load_ledgers(const std::vector<std::string>& paths,
                                         const ledger::PublicKey& key) {
  std::vector<report::Ledger> ledgers;
  for (const std::string& path : paths) ledgers.push_back(load_ledger(path, "", true, &key));
  return ledgers;
}

// Names the ledgers in the certificate by their file names, or by the paths given when two
// file names clash (node1/ledger.jsonl, node2/ledger.jsonl).
void name_ledgers(std::vector<report::Ledger>& ledgers) {
  std::set<std::string> names;
  for (const report::Ledger& l : ledgers) names.insert(fs::path(l.path).filename().string());
  if (names.size() < ledgers.size()) return;
  for (report::Ledger& l : ledgers) l.path = fs::path(l.path).filename().string();
}

std::string now_utc() {
  using namespace std::chrono;
  return report::format_time(
      double(duration_cast<seconds>(system_clock::now().time_since_epoch()).count()));
}

void issue(const CertifyCommandOptions& o) {
  PENG_INPUT_CHECK(!o.ledgers.empty(), "certify: give the ledgers to certify");
  PENG_INPUT_CHECK(!o.signing_key.empty(), "certify: --signing-key is required");
  PENG_INPUT_CHECK(!o.out.empty(), "certify: --out is required");
  PENG_INPUT_CHECK(!o.from.empty() && !o.to.empty(),
                   "certify: --from and --to are required (the contract's period)");
  PENG_INPUT_CHECK(o.public_key.empty(),
                   "certify: --public-key goes with --verify; the ledgers' key is "
                   "--ledger-public-key");
  const certificate::Request request{.contract = o.contract,
                                     .supplier = o.supplier,
                                     .customer = o.customer,
                                     .project = o.project,
                                     .from = report::parse_time(o.from, "--from"),
                                     .to = report::parse_time(o.to, "--to"),
                                     .issued = now_utc()};
  const fs::path out(o.out), json_path = out / "certificate.json";
  PENG_INPUT_CHECK(!fs::exists(json_path), json_path.string(),
                   " exists: a certificate is never overwritten (choose another --out)");
  const ledger::SigningKey key = ledger::SigningKey::load(o.signing_key);
  const ledger::PublicKey ledger_key =
      o.ledger_public_key.empty() ? key.public_key() : ledger::PublicKey::load(o.ledger_public_key);
  std::vector<report::Ledger> ledgers = load_ledgers(o.ledgers, ledger_key);
  name_ledgers(ledgers);
  json cert = certificate::build(request, std::move(ledgers));
  certificate::sign(cert, key);

  fs::create_directories(out);
  // The JSON last: a folder holding certificate.json holds the whole certificate.
  write_file_atomic(out / "certificate.csv", certificate::to_csv(cert));
  write_file_atomic(out / "certificate.html", certificate::to_html(cert));
  write_file_atomic(json_path, certificate::to_file(cert));
  const json& t = cert.at("total");
  std::printf(
      "certificate %s: %lld jobs, %.3f device-hours, %s PFLOP/s-hours, %.4e model FLOPs, %lld "
      "tokens, energy %s; signed by key %s; wrote %s/certificate.{json,csv,html}\n",
      o.contract.c_str(), static_cast<long long>(t.at("jobs").get<int64_t>()),
      t.at("device_hours").get<double>(),
      t.at("pflops_hours").is_null()
          ? "n/a"
          : report::format("%.4f", t.at("pflops_hours").get<double>()).c_str(),
      t.at("model_flops").get<double>(), static_cast<long long>(t.at("tokens").get<int64_t>()),
      t.at("energy_kwh").is_null()
          ? "not measured"
          : report::format("%.3f kWh", t.at("energy_kwh").get<double>()).c_str(),
      key.key_id().c_str(), o.out.c_str());
}

void verify(const CertifyCommandOptions& o) {
  PENG_INPUT_CHECK(!o.public_key.empty(), "certify --verify: --public-key is required");
  PENG_INPUT_CHECK(o.signing_key.empty() && o.out.empty(),
                   "certify --verify checks a certificate: --signing-key and --out do not apply");
  const ledger::PublicKey key = ledger::PublicKey::load(o.public_key);
  const json cert = certificate::read_signed(o.verify, key);  // the fields read here checked
  std::string line = o.verify + ": ok, contract " + cert.at("contract").get<std::string>() +
                     ", signed by key " + key.key_id();
  if (!o.ledgers.empty()) {
    const std::optional<ledger::PublicKey> other =
        o.ledger_public_key.empty()
            ? std::nullopt
            : std::optional<ledger::PublicKey>(ledger::PublicKey::load(o.ledger_public_key));
    try {
      certificate::check_against_ledgers(cert, load_ledgers(o.ledgers, other ? *other : key));
    } catch (const InputError& e) {
      throw InputError(o.verify + ": " + e.what());
    }
    line += "; " + std::to_string(o.ledgers.size()) + " ledger" +
            (o.ledgers.size() == 1 ? "" : "s") +
            " hold every record it covers, every figure recomputed";
  }
  std::printf("%s\n", line.c_str());
}

}  // namespace

void run_certify_command(const CertifyCommandOptions& o) {
  if (o.verify.empty()) {
    issue(o);
  } else {
    verify(o);
  }
}

void add_certify_command(CLI::App& app) {
  auto o = std::make_shared<CertifyCommandOptions>();
  CLI::App* cmd = app.add_subcommand(
      "certify",
      "issue a signed compute-delivery certificate from Ed25519-signed usage ledgers, or verify "
      "one (--verify)");
  cmd->add_option("ledger", o->ledgers, "usage ledger (JSON lines)");
  cmd->add_option("--contract", o->contract, "contract id");
  cmd->add_option("--supplier", o->supplier, "supplier (who delivered the compute)");
  cmd->add_option("--customer", o->customer, "customer (who received it)");
  cmd->add_option_function<std::string>(
      "--project", [o](const std::string& p) { o->project = p; }, "only this project's records");
  cmd->add_option("--from", o->from, "period start: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)");
  cmd->add_option("--to", o->to, "period end (exclusive), as --from");
  cmd->add_option("--signing-key", o->signing_key, "Ed25519 private key (PEM, mode 0600)");
  cmd->add_option("--out", o->out, "folder for certificate.json, .csv and .html");
  cmd->add_option("--verify", o->verify, "verify this certificate (JSON) instead of issuing one");
  cmd->add_option("--public-key", o->public_key, "with --verify: the certificate's public key");
  cmd->add_option("--ledger-public-key", o->ledger_public_key,
                  "the ledgers' public key when another key signed them");
  cmd->callback([o] { run_certify_command(*o); });
}

}  // namespace peng
