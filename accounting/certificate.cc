#include "peng/accounting/certificate.h"

#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include "peng/accounting/ledger.h"
#include "peng/core/error.h"

namespace peng::certificate {

namespace {

using nlohmann::json;

constexpr const char* kCapacityUnit =
    "PFLOP/s-hours: device-hours x the device's dense BF16/FP16 peak FLOP/s (the peak each "
    "record was rated at, named in \"peaks\"), / 1e15";

using report::optional_json;

// A report row's figures, as the certificate shows them.
json figures(const report::Row& r) {
  return {{"key", r.key},
          {"jobs", r.jobs},
          {"device_hours", r.device_hours},
          {"pflops_hours", optional_json(r.pflops_hours)},
          {"peaks", report::peaks_json(r.peaks)},
          {"model_flops", r.model_flops},
          {"avg_mfu", optional_json(r.avg_mfu)},
          {"goodput", optional_json(r.goodput)},
          {"tokens", r.tokens},
          {"energy_kwh", optional_json(r.kwh)},
          {"energy", r.kwh ? "measured" : "not measured"}};
}

json job_json(const report::JobDetail& j, const report::Row& row) {
  json out = figures(row);
  out.erase("key");
  out.erase("jobs");
  out.update({{"job", j.job},
              {"project", j.project},
              {"user", j.user},
              {"device", j.device},
              {"devices", j.devices},
              {"hosts", j.hosts},
              {"start", j.start},
              {"end", j.end ? json(*j.end) : json(nullptr)},
              {"last", j.last},
              {"status", j.status},
              {"config_hash", j.config_hash},
              {"checkpoint_steps", j.checkpoint_steps},
              {"steps", j.steps},
              {"ledger", j.ledger}});
  return out;
}

// SHA-256 of line `i` of a verified ledger: its records are in canonical form, so the dump
// is the line's bytes.
std::string line_hash(const report::Ledger& l, size_t i) {
  return ledger::sha256_hex(l.lines.at(i).dump());
}

json ledger_entry(const report::Ledger& l) {
  return {{"name", l.path},
          {"first", line_hash(l, 0)},
          {"head", line_hash(l, l.lines.size() - 1)},
          {"records", int64_t(l.lines.size())},
          {"key_id", l.key_id}};
}

void check_request(const Request& r) {
  PENG_INPUT_CHECK(!r.contract.empty(), "the contract id (--contract) must not be empty");
  PENG_INPUT_CHECK(!r.supplier.empty(), "the supplier (--supplier) must not be empty");
  PENG_INPUT_CHECK(!r.customer.empty(), "the customer (--customer) must not be empty");
  PENG_INPUT_CHECK(r.from < r.to, "the period's start ", report::format_time(r.from),
                   " is not before its end ", report::format_time(r.to));
}

// `cert[key]` when it is a string (non-empty unless `may_be_empty`); InputError naming it.
const json& string_field(const json& obj, const std::string& key, const std::string& where,
                         bool may_be_empty = false) {
  const auto it = obj.find(key);
  PENG_INPUT_CHECK(it != obj.end() && it->is_string() &&
                       (may_be_empty || !it->get_ref<const std::string&>().empty()),
                   where, key, " is missing, empty or not a string");
  return *it;
}

// The fields request_of() and check_against_ledgers() read, checked before they are read
// (everything else is compared with the rebuilt certificate).
void check_shape(const json& cert) {
  for (const char* key : {"contract", "supplier", "customer", "issued"})
    string_field(cert, key, "");
  PENG_INPUT_CHECK(
      cert.contains("project") && (cert["project"].is_null() || cert["project"].is_string()),
      "project is missing or neither null nor a string");
  PENG_INPUT_CHECK(cert.contains("period") && cert["period"].is_object(),
                   "period is missing or not an object");
  string_field(cert["period"], "from", "period.");
  string_field(cert["period"], "to", "period.");
  PENG_INPUT_CHECK(
      cert.contains("ledgers") && cert["ledgers"].is_array() && !cert["ledgers"].empty(),
      "ledgers is missing, empty or not an array");
  for (size_t i = 0; i < cert["ledgers"].size(); ++i) {
    const json& e = cert["ledgers"][i];
    const std::string where = "ledgers[" + std::to_string(i) + "].";
    PENG_INPUT_CHECK(e.is_object(), "ledgers[", i, "] is not an object");
    for (const char* key : {"name", "first", "head", "key_id"}) string_field(e, key, where);
    PENG_INPUT_CHECK(e.contains("records") && e["records"].is_number_integer() &&
                         e["records"].get<int64_t>() >= 1,
                     where, "records is not a count of at least 1");
  }
}

void check_ledgers(const std::vector<report::Ledger>& ledgers) {
  PENG_INPUT_CHECK(!ledgers.empty(), "a certificate needs at least one ledger");
  std::map<std::string, std::string> first_of;  // first line's hash -> name
  std::set<std::string> names;
  for (const report::Ledger& l : ledgers) {
    PENG_INPUT_CHECK(!l.key_id.empty(), l.path,
                     ": its records are not Ed25519-signed: a certificate is built only from "
                     "ledgers a third party can verify (peng train --ledger-signing-key)");
    PENG_INPUT_CHECK(!l.lines.empty(), l.path, ": the ledger holds no records");
    PENG_INPUT_CHECK(names.insert(l.path).second, "two ledgers are named ", l.path,
                     ": a certificate names each ledger by its file name");
    const auto [it, fresh] = first_of.emplace(line_hash(l, 0), l.path);
    PENG_INPUT_CHECK(fresh, l.path, " is the same ledger as ", it->second,
                     " (its records would count twice)");
  }
}

// The period as the certificate prints it.
json period_json(const Request& r) {
  return {{"from", report::format_time(r.from)}, {"to", report::format_time(r.to)}};
}

// "a.b[2].c" of a field, for messages.
std::string child(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

bool same_number(const json& a, const json& b) {
  // An integer field written as a decimal (or the reverse) differs.
  if (a.is_number_integer() != b.is_number_integer()) return false;
  if (a.is_number_integer()) return a == b;
  const double x = a.get<double>(), y = b.get<double>();
  return std::abs(x - y) <= 1e-9 * std::max(std::abs(x), std::abs(y));
}

// The first field where `cert` and `rebuilt` differ ("" when none).
std::string first_difference(const json& cert, const json& rebuilt, const std::string& path) {
  const auto differs = [&] {
    return path + ": the certificate says " + cert.dump() + ", the ledgers give " + rebuilt.dump();
  };
  if (cert.is_number() && rebuilt.is_number()) return same_number(cert, rebuilt) ? "" : differs();
  if (cert.type() != rebuilt.type()) return differs();
  if (cert.is_object()) {
    for (const auto& [key, value] : cert.items()) {
      if (!rebuilt.contains(key)) return child(path, key) + ": not a certificate field";
    }
    for (const auto& [key, value] : rebuilt.items()) {
      if (!cert.contains(key)) return child(path, key) + ": missing from the certificate";
      std::string d = first_difference(cert.at(key), value, child(path, key));
      if (!d.empty()) return d;
    }
    return "";
  }
  if (cert.is_array()) {
    if (cert.size() != rebuilt.size()) {
      return path + ": the certificate lists " + std::to_string(cert.size()) +
             ", the ledgers give " + std::to_string(rebuilt.size());
    }
    for (size_t i = 0; i < cert.size(); ++i) {
      std::string d = first_difference(cert[i], rebuilt[i], path + "[" + std::to_string(i) + "]");
      if (!d.empty()) return d;
    }
    return "";
  }
  return cert == rebuilt ? "" : differs();
}

// The index in `cert`'s "ledgers" of the ledger whose first line hashes to `first`.
std::optional<size_t> covered_ledger(const json& cert, const std::string& first) {
  const json& covered = cert.at("ledgers");
  for (size_t i = 0; i < covered.size(); ++i) {
    if (covered[i].at("first") == first) return i;
  }
  return std::nullopt;
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(path.string() + ": cannot open the certificate");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// `l` cut to the `records` lines the certificate covers, checked against its head.
void cut_to_covered(report::Ledger& l, const json& entry) {
  const auto covered = entry.at("records").get<int64_t>();
  const std::string name = entry.at("name").get<std::string>();
  PENG_INPUT_CHECK(int64_t(l.lines.size()) >= covered, l.path, ": holds ", l.lines.size(),
                   " records, fewer than the ", covered, " the certificate covers of ledger ", name,
                   ": records were cut off at its tail");
  l.lines.resize(size_t(covered));
  const std::string head = line_hash(l, l.lines.size() - 1);
  PENG_INPUT_CHECK(head == entry.at("head").get<std::string>(), l.path, ": record ", covered - 1,
                   " hashes to ", head, ", not the certificate's head ",
                   entry.at("head").get<std::string>(), ": the ledger was rewritten");
  PENG_INPUT_CHECK(l.key_id == entry.at("key_id").get<std::string>(), l.path, ": signed by key ",
                   l.key_id, ", the certificate says ", entry.at("key_id").get<std::string>());
  l.path = name;
}

}  // namespace

json build(const Request& request, std::vector<report::Ledger> ledgers) {
  check_request(request);
  check_ledgers(ledgers);
  json covered = json::array();
  for (const report::Ledger& l : ledgers) covered.push_back(ledger_entry(l));
  report::Options window;
  window.from = request.from;
  window.to = request.to;
  window.project = request.project;
  const report::Report rep = report::build_report(std::move(ledgers), window);
  PENG_INPUT_CHECK(rep.records_in_window > 0, "no ledger record falls in the period [",
                   report::format_time(request.from), ", ", report::format_time(request.to), ")",
                   request.project ? " for project " + *request.project : std::string(),
                   ": a wrong period, or the ledger that covers it was not given");

  json devices = json::array(), jobs = json::array();
  for (const report::Row& row : rep.groups.at("device")) devices.push_back(figures(row));
  std::map<std::string, const report::Row*> job_rows;
  for (const report::Row& row : rep.groups.at("job")) job_rows[row.key] = &row;
  for (const report::JobDetail& j : rep.jobs) jobs.push_back(job_json(j, *job_rows.at(j.job)));
  return {{"format", kFormat},
          {"contract", request.contract},
          {"supplier", request.supplier},
          {"customer", request.customer},
          {"project", request.project ? json(*request.project) : json(nullptr)},
          {"period", period_json(request)},
          {"issued", request.issued},
          {"capacity_unit", kCapacityUnit},
          {"devices", devices},
          {"total", figures(rep.total)},
          {"jobs", jobs},
          {"ledgers", covered}};
}

void sign(json& cert, const ledger::SigningKey& key) {
  cert.erase("sig");
  cert["key_id"] = key.key_id();
  cert["sig"] = key.sign_hex(cert.dump());
}

std::string to_file(const json& cert) { return cert.dump() + "\n"; }

json read_signed(const std::filesystem::path& path, const ledger::PublicKey& key) {
  const std::string name = path.string();
  PENG_INPUT_CHECK(std::filesystem::is_regular_file(path), name, ": no such certificate file");
  const std::string text = read_text(path);
  json cert = json::parse(text, nullptr, /*allow_exceptions=*/false);
  PENG_INPUT_CHECK(cert.is_object() && cert.contains("format") && cert["format"] == kFormat, name,
                   ": not a peng certificate (no \"format\": \"", kFormat, "\")");
  PENG_INPUT_CHECK(to_file(cert) == text, name,
                   ": not in canonical form (one line, keys sorted, no spaces): the signed bytes "
                   "are the canonical dump");
  PENG_INPUT_CHECK(cert.contains("key_id") && cert["key_id"].is_string() && cert.contains("sig") &&
                       cert["sig"].is_string(),
                   name, ": unsigned (no key_id and sig)");
  const std::string key_id = cert["key_id"].get<std::string>();
  PENG_INPUT_CHECK(key_id == key.key_id(), name, ": signed by another key (key_id ", key_id,
                   ", the public key's is ", key.key_id(), ")");
  json body = cert;
  body.erase("sig");
  PENG_INPUT_CHECK(key.verify(body.dump(), cert["sig"].get<std::string>()), name,
                   ": Ed25519 signature does not match: the certificate was changed after it "
                   "was signed");
  try {
    check_shape(cert);
  } catch (const InputError& e) {
    throw InputError(name + ": " + e.what());
  }
  return cert;
}

Request request_of(const json& cert) {
  Request r;
  r.contract = cert.at("contract").get<std::string>();
  r.supplier = cert.at("supplier").get<std::string>();
  r.customer = cert.at("customer").get<std::string>();
  if (!cert.at("project").is_null()) r.project = cert.at("project").get<std::string>();
  r.from = report::parse_time(cert.at("period").at("from").get<std::string>(), "period.from");
  r.to = report::parse_time(cert.at("period").at("to").get<std::string>(), "period.to");
  r.issued = cert.at("issued").get<std::string>();
  return r;
}

void check_against_ledgers(const json& cert, std::vector<report::Ledger> ledgers) try {
  std::vector<report::Ledger> ordered(cert.at("ledgers").size());
  for (report::Ledger& l : ledgers) {
    PENG_INPUT_CHECK(!l.lines.empty(), l.path, ": the ledger holds no records");
    const std::string first = line_hash(l, 0);
    const std::optional<size_t> index = covered_ledger(cert, first);
    PENG_INPUT_CHECK(index, l.path,
                     " is not a ledger the certificate covers (its first record "
                     "hashes to ",
                     first, ")");
    report::Ledger& slot = ordered[*index];
    PENG_INPUT_CHECK(slot.path.empty(), l.path, " is the same ledger as ", slot.path);
    cut_to_covered(l, cert.at("ledgers")[*index]);
    slot = std::move(l);
  }
  for (size_t i = 0; i < ordered.size(); ++i) {
    const json& e = cert.at("ledgers")[i];
    PENG_INPUT_CHECK(!ordered[i].path.empty(), "the certificate covers ledger ",
                     e.at("name").get<std::string>(), " (", e.at("records").get<int64_t>(),
                     " records, first record ", e.at("first").get<std::string>(),
                     ") but it was not given: its figures cannot be recomputed without it");
  }
  json rebuilt = build(request_of(cert), std::move(ordered));
  rebuilt["key_id"] = cert.at("key_id");
  rebuilt["sig"] = cert.at("sig");
  const std::string difference = first_difference(cert, rebuilt, "");
  PENG_INPUT_CHECK(difference.empty(), difference);
} catch (const json::exception& e) {
  // Only a certificate signed with fields missing or of the wrong type gets here.
  throw InputError(std::string("not a well-formed certificate (") + e.what() + ")");
}

std::string to_csv(const json& cert) {
  const std::string prefix = report::csv_field(cert.at("contract").get<std::string>()) + "," +
                             cert.at("period").at("from").get<std::string>() + "," +
                             cert.at("period").at("to").get<std::string>() + ",";
  const auto number = [](const json& v, const char* fmt) {
    return v.is_null() ? std::string() : report::format(fmt, v.get<double>());
  };
  const auto row = [&](const std::string& section, const std::string& key, const json& f,
                       const std::string& jobs) {
    return prefix + section + "," + report::csv_field(key) + "," + jobs + "," +
           number(f.at("device_hours"), "%.9g") + "," + number(f.at("pflops_hours"), "%.9g") + "," +
           number(f.at("energy_kwh"), "%.9g") + "," +
           std::to_string(f.at("tokens").get<int64_t>()) + "," +
           number(f.at("model_flops"), "%.0f") + "," + number(f.at("avg_mfu"), "%.9g") + "," +
           number(f.at("goodput"), "%.9g") + "\n";
  };
  std::string out =
      "contract,from,to,section,key,jobs,device_hours,pflops_hours,energy_kwh,tokens,model_flops,"
      "avg_mfu,goodput\n";
  for (const json& d : cert.at("devices")) {
    out += row("device", d.at("key").get<std::string>(), d,
               std::to_string(d.at("jobs").get<int64_t>()));
  }
  for (const json& j : cert.at("jobs")) out += row("job", j.at("job").get<std::string>(), j, "1");
  const json& t = cert.at("total");
  return out + row("total", "all", t, std::to_string(t.at("jobs").get<int64_t>()));
}

}  // namespace peng::certificate
