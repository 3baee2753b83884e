// Compute-delivery certificates (`peng certify`): what a supplier delivered to a customer
// under one contract over one period, computed from Ed25519-signed usage ledgers
// (accounting/ledger.h) and signed itself. Anyone holding the public key checks the
// signature; holding the ledgers too, they recompute every figure and check that no record
// the certificate covered was cut off or changed (docs/VERIFYING.md).
//
// A certificate is a JSON object; its file is the canonical dump (keys sorted, no spaces,
// nlohmann::json::dump()) and '\n':
//   "format"                       "peng-certificate/1"
//   "contract", "supplier", "customer", "project" (null: every project)
//   "period": {"from", "to"}       [from, to) in UTC: the records whose "time" falls in it,
//                                  each counting what its job did since the job's previous
//                                  record (accounting/report.h, "Cumulative records")
//   "issued"                       UTC time of issue
//   "capacity_unit"                how "pflops_hours" is defined
//   "devices": [row]               one per device model, sorted
//   "total": row                   key "all"
//   "jobs": [job]                  sorted by job id
//   "ledgers": [{"name", "first", "head", "records", "key_id"}]: each ledger's file name,
//                                  SHA-256 of its first and last line, record count and the
//                                  key its records are signed with: the certificate commits to
//                                  the ledger's first `records` lines
//   "key_id", "sig"                the signing key's id and Ed25519 signature of the canonical
//                                  dump without "sig" (as a ledger record's, accounting/signing.h)
// row: {"key", "jobs", "device_hours", "pflops_hours" (device-hours x dense peak, null when a
//       record names no peak), "peaks": [{"source", "tflops"}] (the peak table's entry or
//       probe each record was rated at), "model_flops", "avg_mfu", "goodput", "tokens",
//       "energy_kwh" (null when not every record was metered), "energy" ("measured" |
//       "not measured": never an estimate)}
// job: {"job", "project", "user", "device", "devices", "hosts", "start", "end" (null while
//       running), "last", "status", "config_hash", "checkpoint_steps", "steps", "ledger"} and
//       its row's figures (all but "key" and "jobs")
// Figures are what accounting/report.h computes; avg_mfu and goodput are fractions.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "peng/accounting/report.h"
#include "peng/accounting/signing.h"

namespace peng::certificate {

inline constexpr const char* kFormat = "peng-certificate/1";

struct Request {
  std::string contract, supplier, customer;
  std::optional<std::string> project;  // only this project's records
  double from = 0, to = 0;             // Unix seconds, [from, to)
  std::string issued;                  // UTC ISO 8601
};

// The unsigned certificate over `ledgers` (verified, Ed25519-signed, with their lines; each
// one's `path` is the name the certificate gives it). InputError when the request is
// incomplete, a ledger is empty, unsigned or given twice, two share a name, or no record
// falls in the period (a wrong period, or the ledger that covers it is missing).
nlohmann::json build(const Request& request, std::vector<report::Ledger> ledgers);

// Adds "key_id" and "sig" to `cert`.
void sign(nlohmann::json& cert, const ledger::SigningKey& key);

// The file's bytes: the canonical dump and '\n'.
std::string to_file(const nlohmann::json& cert);

// Reads a certificate file and checks its form ("format", canonical dump) and its signature
// under `key`. InputError naming the file and what is wrong: not a certificate, signed by
// another key (both ids), "Ed25519 signature does not match" (changed after signing).
nlohmann::json read_signed(const std::filesystem::path& path, const ledger::PublicKey& key);

// The request a certificate was built for (to rebuild it).
Request request_of(const nlohmann::json& cert);

// Checks `cert` against `ledgers` (verified, with their lines): each given ledger is one
// the certificate covers (matched by its first line's hash), every covered ledger is given,
// holds at least the certificate's record count and its line at that count hashes to the
// certificate's head (records cut off at the tail or rewritten fail here); then rebuilds the
// certificate from those records and compares every field: strings and integers exactly,
// other numbers within 1e-9 relative (a build with other floating-point contraction may
// differ in the last digits; the signature covers the exact bytes). InputError naming the
// ledger, or the field ("total.tokens: the certificate says 9, the ledgers give 8").
void check_against_ledgers(const nlohmann::json& cert, std::vector<report::Ledger> ledgers);

// CSV (RFC 4180): header "contract,from,to,section,key,jobs,device_hours,pflops_hours,
// energy_kwh,tokens,model_flops,avg_mfu,goodput", rows of section "device", "job", then
// "total"; unknown values empty.
std::string to_csv(const nlohmann::json& cert);

}  // namespace peng::certificate
