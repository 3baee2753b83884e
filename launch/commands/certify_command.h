// `peng certify`: a signed compute-delivery certificate from Ed25519-signed usage ledgers
// (accounting/certificate.h), and its verification.
//
//   peng certify LEDGER... --contract ID --supplier NAME --customer NAME --from DATE --to DATE
//                --signing-key KEY.pem --out DIR [--project P] [--ledger-public-key PUB.pem]
//     verifies every LEDGER (hash chain and Ed25519 signatures, under --ledger-public-key or
//     else the signing key's public half; named in the certificate by its file name, or by
//     the path given when two file names clash), builds the certificate for [--from, --to) and
//     writes
//     DIR/certificate.json (the signed object), DIR/certificate.csv and DIR/certificate.html;
//     refuses to overwrite a certificate already in DIR. Prints one summary line.
//   peng certify --verify CERT.json --public-key PUB.pem [LEDGER...] [--ledger-public-key P]
//     checks the certificate's signature; with ledgers, also each ledger (under
//     --ledger-public-key, else --public-key) and that it still holds every record the
//     certificate covers, and recomputes every figure. Prints "CERT: ok, ...".
// Every failure is an InputError naming the file and the record or field; main() prints it as
// one `error:` line and exits 1.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace peng {

struct CertifyCommandOptions {
  std::vector<std::string> ledgers;
  std::string contract, supplier, customer;
  std::optional<std::string> project;  // only this project ("" is the default project)
  std::string from, to;                // YYYY-MM-DD[THH:MM:SSZ]
  std::string signing_key, out;
  std::string verify;             // a certificate to verify ("" = issue one)
  std::string public_key;         // with --verify: the certificate's key
  std::string ledger_public_key;  // the ledgers' key when it is not the certificate's
};

// Issues a certificate (verify empty) or verifies one, as described above.
void run_certify_command(const CertifyCommandOptions& o);

// Registers the `certify` subcommand on app.
void add_certify_command(CLI::App& app);

}  // namespace peng
