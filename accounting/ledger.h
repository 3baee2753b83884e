// The usage ledger: an append-only JSON-lines file of signed-off records of what jobs used
// and achieved, for compute-subsidy claims (docs/TELEMETRY.md).
//
// Record (one line, a JSON object dumped by nlohmann::json::dump() with its keys sorted:
// the canonical form; a line in any other form fails verification):
//   "v": 1                    format version
//   "seq": n                  index of the record in this file (0-based)
//   "prev": hex               SHA-256 of the previous line's bytes (without '\n');
//                             64 zeros for the first record
//   "hmac": hex               optional: HMAC-SHA-256 under the ledger key of the canonical
//                             dump of the record without "hmac"
//   "key_id", "sig": hex      optional, instead of "hmac": the Ed25519 signing key's id and
//                             signature of the canonical dump without "sig"
//                             (accounting/signing.h); a ledger's records are all unsigned,
//                             all HMAC'd or all Ed25519-signed: the kinds never mix
//   "kind": "interval"|"end"  one per interval while the job runs, one at its end
//   "job", "job_record"       job id (slurm-<id>[.<step>], ompi-<jobid>-<start>,
//                             peng-<start>-<pid>), record index in the job
//   "project","user","hosts"  who and where ("hosts": array of host names, each once)
//   "device", "devices"       device model (e.g. "NVIDIA H100 80GB HBM3", "cpu: <model>"),
//                             devices (ranks) of the job
//   "start", "time"           job start, time of this record (UTC, ISO 8601, "Z")
//   "config_hash"             SHA-256 of the job's TrainConfig in text format
//   "checkpoint_dir"          absolute checkpoint folder ("" = none): a later run resuming
//                             from it counts the steps this job reached again as lost
//   "status"                  "running" (interval), "completed", "stopped: SIGTERM",
//                             "failed: <error>" (end)
// Cumulative since the job's start (each record supersedes the earlier ones of its job):
//   "wall_s", "device_seconds" (= wall_s x devices), "productive_s" (wall seconds of
//   steps that count: goodput's numerator), "goodput" (productive_s / wall_s),
//   "goodput_lost_s" ({startup, checkpoint, recomputed, evaluation, other} seconds),
//   "steps" (optimizer steps run by this job), "step" (the training step reached),
//   "tokens", "model_flops", "peak_flops" (per device, FLOP/s), "peak_source",
//   "mfu", "hfu" (over the job's step time), "energy_j" (null when no meter),
//   "energy_source" ("nvml", "none"), "checkpoint_steps" (steps saved; an async save commits
//   in the background, by the end record at the latest)
// Of the interval that ends at this record (for charts):
//   "loss" (last training loss, null before the first step), "interval_mfu",
//   "power_w" (mean power of the job's devices summed, null when no meter)
//
// Tamper evidence: editing, deleting, reordering or inserting a line breaks the chain at
// that point; recomputing the chain after an edit needs the key when records carry HMACs or
// the private key when they carry Ed25519 signatures (checked by anyone with the public key).
// Deleting records at the end leaves a valid shorter chain: compare `head` (the hash of
// the last line, printed by `peng report --verify`) with a copy kept elsewhere.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "peng/accounting/signing.h"

namespace peng::ledger {

// Appends records to one ledger file. Each append takes an exclusive flock() on the file,
// reads its last line (for "seq" and "prev"), writes the line with one write() call on an
// O_APPEND descriptor and fsyncs; several jobs may append to the same ledger. Each
// process opens its own writer: a writer copied by fork() would share its lock.
class LedgerWriter {
 public:
  // Opens (creates) `path`; `key` empty: records carry no HMAC; `signer`: records carry its
  // Ed25519 signature (not with a key). Throws peng::InputError / IoError when the file
  // cannot be opened, its last line is not a complete record, or its records are sealed
  // another way (unsigned, HMAC, Ed25519: the kinds never mix in one ledger) or signed by
  // another Ed25519 key.
  LedgerWriter(std::filesystem::path path, std::string key,
               std::shared_ptr<const SigningKey> signer = nullptr);
  ~LedgerWriter();
  LedgerWriter(const LedgerWriter&) = delete;
  LedgerWriter& operator=(const LedgerWriter&) = delete;

  // Adds "v", "seq", "prev" (and "hmac", or "key_id" and "sig") to `record` and appends it;
  // returns the line.
  std::string append(nlohmann::json record);

 private:
  std::filesystem::path path_;
  std::string key_;
  std::shared_ptr<const SigningKey> signer_;
  int fd_ = -1;
};

// Reads a key file: its bytes with trailing whitespace removed; must not be empty.
std::string read_key_file(const std::filesystem::path& path);

struct VerifyResult {
  bool ok = true;
  int64_t records = 0;        // good records read (those before the first bad one)
  std::string head;           // SHA-256 of the last good line (64 zeros when none)
  int64_t first_bad = -1;     // 0-based line of the first bad record (-1 when ok)
  std::string error;          // what is wrong with it ("hmac does not match (...)", ...)
  bool hmac_checked = false;  // a key was given
  std::string key_id;         // the public key whose signatures were checked ("" = none)
};

// Checks every line, stopping at the first bad one: JSON object, canonical form, "v",
// "seq" = line index, "prev" chain, a final '\n' (a torn last line is bad), and with a
// non-empty `key` the HMAC (a record without one is bad). Without a key only the chain is
// checked, which whoever can write the file can recompute after an edit. With `public_key`,
// every record's Ed25519 signature under it ("signed by another key" when its key_id
// differs). Records sealed in different ways are bad whatever is given. An empty file is
// an intact ledger of 0 records. With `records`, the good records are appended to it (the
// same pass). Throws peng::IoError when the file cannot be read.
VerifyResult verify(const std::filesystem::path& path, const std::string& key,
                    std::vector<nlohmann::json>* records = nullptr,
                    const PublicKey* public_key = nullptr);

// The records of a ledger, in file order; throws peng::InputError naming the file and the
// line when the ledger does not verify (use verify() to inspect without throwing).
std::vector<nlohmann::json> read_verified(const std::filesystem::path& path, const std::string& key,
                                          const PublicKey* public_key = nullptr);

// Hex SHA-256 / HMAC-SHA-256 (OpenSSL).
std::string sha256_hex(std::string_view bytes);
// Lowercase hex of `n` bytes.
std::string to_hex(const unsigned char* bytes, size_t n);
std::string hmac_sha256_hex(std::string_view key, std::string_view bytes);

}  // namespace peng::ledger
