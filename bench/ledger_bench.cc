// The cost of sealing a usage-ledger record (accounting/ledger.h, signing.h): the seal alone
// (BM_Seal: none, HMAC-SHA-256, Ed25519 signature) of a typical interval record's canonical
// dump, and a whole append (BM_Append: flock, tail read, seal, write, fsync) to a ledger in
// /tmp. The HMAC mode is the peer: the ledger's seal before Ed25519.
//
//   build/bin/ledger_bench
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "peng/accounting/ledger.h"
#include "peng/accounting/signing.h"

namespace peng::ledger {
namespace {

enum Mode { kNone, kHmac, kEd25519 };

// An interval record as job_telemetry writes one (the same keys, plausible values).
nlohmann::json interval_record() {
  return {{"kind", "interval"},
          {"job", "slurm-123456.0"},
          {"job_record", 17},
          {"project", "coupons-2026"},
          {"user", "alice"},
          {"hosts", {"node-01", "node-02"}},
          {"device", "NVIDIA H100 80GB HBM3"},
          {"devices", 16},
          {"start", "2026-12-06T10:00:00Z"},
          {"time", "2026-12-06T12:00:00Z"},
          {"config_hash", std::string(64, 'a')},
          {"checkpoint_dir", "/scratch/ckpt"},
          {"status", "running"},
          {"wall_s", 7200.5},
          {"device_seconds", 115208.0},
          {"productive_s", 7000.1},
          {"goodput", 0.972},
          {"steps", 5000},
          {"step", 5000},
          {"tokens", 20971520000},
          {"model_flops", 1.2e20},
          {"peak_flops", 9.89e14},
          {"mfu", 0.41},
          {"hfu", 0.45},
          {"energy_j", 4.1e8},
          {"energy_source", "nvml"},
          {"loss", 2.71},
          {"interval_mfu", 0.42},
          {"power_w", 9100.0}};
}

// A key pair under /tmp, made once.
const SigningKey& signing_key() {
  static const SigningKey key = [] {
    const std::string prefix = (std::filesystem::temp_directory_path() /
                                ("peng-ledger-bench-" + std::to_string(::getpid())))
                                   .string();
    write_key_pair(prefix);
    SigningKey k = SigningKey::load(prefix + ".pem");
    std::filesystem::remove(prefix + ".pem");
    std::filesystem::remove(prefix + ".pub.pem");
    return k;
  }();
  return key;
}

void BM_Seal(benchmark::State& state) {
  const std::string body = interval_record().dump();
  const Mode mode = Mode(state.range(0));
  for (auto _ : state) {
    std::string seal = mode == kHmac ? hmac_sha256_hex("a-32-byte-ledger-key-0123456789ab", body)
                       : mode == kEd25519 ? signing_key().sign_hex(body)
                                          : std::string();
    benchmark::DoNotOptimize(seal);
  }
  state.SetLabel(mode == kHmac ? "hmac-sha256" : mode == kEd25519 ? "ed25519" : "none");
}
BENCHMARK(BM_Seal)->Arg(kNone)->Arg(kHmac)->Arg(kEd25519);

void BM_Append(benchmark::State& state) {
  const Mode mode = Mode(state.range(0));
  const std::filesystem::path path = std::filesystem::temp_directory_path() /
                                     ("peng-ledger-bench-" + std::to_string(::getpid()) + ".jsonl");
  std::filesystem::remove(path);
  {
    std::shared_ptr<const SigningKey> signer;
    if (mode == kEd25519) signer = std::shared_ptr<const SigningKey>(&signing_key(), [](auto*) {});
    LedgerWriter writer(path, mode == kHmac ? "a-32-byte-ledger-key-0123456789ab" : "", signer);
    const nlohmann::json record = interval_record();
    for (auto _ : state) writer.append(record);
  }
  std::filesystem::remove(path);
  state.SetLabel(mode == kHmac ? "hmac-sha256" : mode == kEd25519 ? "ed25519" : "none");
}
BENCHMARK(BM_Append)->Arg(kNone)->Arg(kHmac)->Arg(kEd25519)->UseRealTime();

}  // namespace
}  // namespace peng::ledger

BENCHMARK_MAIN();
