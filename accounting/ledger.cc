#include "peng/accounting/ledger.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "peng/core/error.h"

namespace peng::ledger {

namespace {

using nlohmann::json;

const std::string kZeroHash(64, '0');

IoError os_error(const std::filesystem::path& path, const std::string& what, int err) {
  return IoError(
      detail::concat("ledger ", path.string(), ": ", what, " failed: ", std::strerror(err)));
}

// The canonical form of a record. Invalid UTF-8 in a string (a status carrying the bytes of
// an error message, say) becomes U+FFFD, so the line parses back to the same dump.
std::string dump(const json& record) {
  return record.dump(-1, ' ', false, json::error_handler_t::replace);
}

// How a record is sealed.
enum class Seal { kNone, kHmac, kEd25519, kMixed };

Seal seal_of(const json& record) {
  const bool hmac = record.contains("hmac"), sig = record.contains("sig");
  return hmac && sig ? Seal::kMixed : hmac ? Seal::kHmac : sig ? Seal::kEd25519 : Seal::kNone;
}

const char* seal_name(Seal s) {
  switch (s) {
    case Seal::kNone:
      return "unsigned";
    case Seal::kHmac:
      return "HMAC-signed";
    case Seal::kEd25519:
      return "Ed25519-signed";
    case Seal::kMixed:
      return "both HMAC- and Ed25519-signed";
  }
  return "?";
}

const char* seal_hint(Seal theirs) {
  switch (theirs) {
    case Seal::kHmac:
      return "pass its --ledger-key";
    case Seal::kEd25519:
      return "pass its --ledger-signing-key";
    default:
      return "start a new ledger for signed records";
  }
}

// "" when `record`'s Ed25519 signature is `key`'s over the record without "sig".
std::string check_signature(const json& record, const PublicKey& key) {
  const auto id = record.find("key_id");
  const auto sig = record.find("sig");
  if (sig == record.end() || !sig->is_string() || id == record.end() || !id->is_string()) {
    return "record has no Ed25519 key_id and sig but a public key was given";
  }
  if (id->get<std::string>() != key.key_id()) {
    return detail::concat("signed by another key (key_id ", id->get<std::string>(),
                          ", the public key's is ", key.key_id(), ")");
  }
  json body = record;
  body.erase("sig");
  if (!key.verify(dump(body), sig->get<std::string>())) {
    return "Ed25519 signature does not match (edited record)";
  }
  return "";
}

void pread_all(int fd, char* buf, size_t n, off_t offset, const std::filesystem::path& path) {
  while (n > 0) {
    ssize_t r = ::pread(fd, buf, n, offset);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw os_error(path, "reading", errno);
    if (r == 0) throw IoError("ledger " + path.string() + ": unexpected end of file");
    buf += r;
    n -= size_t(r);
    offset += r;
  }
}

constexpr off_t kChunk = 4096;

// 1-based number of the last line of a non-empty file of `size` bytes: its '\n's, plus one
// when the last line has none. Reads the whole file: only for error messages.
int64_t last_line_number(int fd, off_t size, const std::filesystem::path& path) {
  int64_t newlines = 0;
  char last = '\n';
  std::string chunk;
  for (off_t pos = 0; pos < size; pos += kChunk) {
    chunk.resize(size_t(std::min(kChunk, size - pos)));
    pread_all(fd, chunk.data(), chunk.size(), pos, path);
    newlines += std::count(chunk.begin(), chunk.end(), '\n');
    last = chunk.back();
  }
  return newlines + (last == '\n' ? 0 : 1);
}

// The end of a ledger: the bytes of its last line (without '\n') and the record's "seq".
struct Tail {
  std::string line;
  int64_t seq = 0;
};

// The Tail of the ledger open on `fd`; nullopt when the file is empty. Reads backwards from
// the end, a chunk at a time. Throws InputError when the last line is torn or not a record:
// appending after it would extend a chain that no longer verifies.
std::optional<Tail> read_tail(int fd, const std::filesystem::path& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw os_error(path, "fstat", errno);
  const off_t size = st.st_size;
  if (size == 0) return std::nullopt;
  auto not_a_record = [&](const std::string& why) {
    return InputError(detail::concat(
        "ledger ", path.string(), ": the last line is not a complete record (line ",
        last_line_number(fd, size, path), ": ", why,
        "); refusing to append after it: check the ledger with `peng report --verify` and "
        "restore it from a copy"));
  };
  char last = 0;
  pread_all(fd, &last, 1, size - 1, path);
  if (last != '\n') throw not_a_record("no final newline, a torn write");
  // Find the start of the last line: one past the '\n' before the final one.
  const off_t end = size - 1;
  off_t start = 0;
  std::string chunk;
  for (off_t pos = end; pos > 0;) {
    const off_t n = std::min(kChunk, pos);
    pos -= n;
    chunk.resize(size_t(n));
    pread_all(fd, chunk.data(), chunk.size(), pos, path);
    const size_t nl = chunk.rfind('\n');
    if (nl != std::string::npos) {
      start = pos + off_t(nl) + 1;
      break;
    }
  }
  Tail tail;
  tail.line.resize(size_t(end - start));
  pread_all(fd, tail.line.data(), tail.line.size(), start, path);
  json record = json::parse(tail.line, nullptr, false);
  if (!record.is_object()) throw not_a_record("not a JSON object");
  auto seq = record.find("seq");
  if (seq == record.end() || !seq->is_number_integer() || seq->get<int64_t>() < 0) {
    throw not_a_record("no valid \"seq\"");
  }
  tail.seq = seq->get<int64_t>();
  return tail;
}

// Holds flock(LOCK_EX) (writers) or flock(LOCK_SH) (readers) on a descriptor for its
// lifetime: a reader never sees another job's append half-written.
class FileLock {
 public:
  FileLock(int fd, const std::filesystem::path& path, int how = LOCK_EX) : fd_(fd) {
    while (::flock(fd_, how) != 0) {
      if (errno != EINTR) throw os_error(path, "locking (flock)", errno);
    }
  }
  ~FileLock() { ::flock(fd_, LOCK_UN); }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_;
};

}  // namespace

std::string to_hex(const unsigned char* bytes, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '\0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
  return out;
}

std::string sha256_hex(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  PENG_CHECK(EVP_Digest(bytes.data(), bytes.size(), md, &n, EVP_sha256(), nullptr) == 1,
             "OpenSSL SHA-256 failed");
  return to_hex(md, n);
}

std::string hmac_sha256_hex(std::string_view key, std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  // A non-null pointer even for an empty key: OpenSSL reads a null key as "no key set".
  const char* key_bytes = key.empty() ? "" : key.data();
  PENG_CHECK(
      HMAC(EVP_sha256(), key_bytes, int(key.size()),
           reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), md, &n) != nullptr,
      "OpenSSL HMAC-SHA-256 failed");
  return to_hex(md, n);
}

LedgerWriter::LedgerWriter(std::filesystem::path path, std::string key,
                           std::shared_ptr<const SigningKey> signer)
    : path_(std::move(path)), key_(std::move(key)), signer_(std::move(signer)) {
  PENG_INPUT_CHECK(key_.empty() || !signer_, "ledger ", path_.string(),
                   ": an HMAC key and an Ed25519 signing key never seal one ledger together");
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw os_error(path_, "opening", errno);
  try {
    FileLock lock(fd_, path_);
    // Records sealed in different ways in one ledger would make it unverifiable either way.
    if (const std::optional<Tail> tail = read_tail(fd_, path_)) {
      const Seal theirs = seal_of(json::parse(tail->line));
      const Seal ours = signer_ ? Seal::kEd25519 : key_.empty() ? Seal::kNone : Seal::kHmac;
      PENG_INPUT_CHECK(theirs == ours, "ledger ", path_.string(), ": its records are ",
                       seal_name(theirs), ", this job's would be ", seal_name(ours),
                       "; the kinds never mix: ", seal_hint(theirs));
      // One ledger, one key: records of two keys would verify under neither.
      const std::string their_key = json::parse(tail->line).value("key_id", "");
      PENG_INPUT_CHECK(!signer_ || their_key == signer_->key_id(), "ledger ", path_.string(),
                       ": its records are signed by key ", their_key, ", this job's key is ",
                       signer_ ? signer_->key_id() : "", "; start a new ledger for a new key");
    }
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

LedgerWriter::~LedgerWriter() { ::close(fd_); }

std::string LedgerWriter::append(json record) {
  PENG_CHECK(record.is_object(), "ledger ", path_.string(), ": a record must be a JSON object");
  FileLock lock(fd_, path_);
  std::optional<Tail> tail = read_tail(fd_, path_);
  for (const char* seal : {"hmac", "key_id", "sig"}) record.erase(seal);
  record["v"] = 1;
  record["seq"] = tail ? tail->seq + 1 : 0;
  record["prev"] = tail ? sha256_hex(tail->line) : kZeroHash;
  if (!key_.empty()) record["hmac"] = hmac_sha256_hex(key_, dump(record));
  if (signer_) {
    record["key_id"] = signer_->key_id();
    record["sig"] = signer_->sign_hex(dump(record));
  }
  const std::string line = dump(record);
  const std::string bytes = line + '\n';

  struct stat st {};
  if (::fstat(fd_, &st) != 0) throw os_error(path_, "fstat", errno);
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t w = ::write(fd_, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      const int err = errno;
      // Cut off a partly written line (we hold the lock) so the ledger stays appendable;
      // when that fails too, the next writer refuses the torn ledger and names the line.
      const bool cut = ::ftruncate(fd_, st.st_size) == 0;
      throw os_error(path_, cut ? "appending a record" : "appending a record (torn line left)",
                     err);
    }
    p += w;
    left -= size_t(w);
  }
  if (::fsync(fd_) != 0) throw os_error(path_, "fsync", errno);
  return line;
}

std::string read_key_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw IoError(
        detail::concat("cannot read ledger key file ", path.string(), ": ", std::strerror(errno)));
  }
  std::string key((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) {
    throw IoError(
        detail::concat("cannot read ledger key file ", path.string(), ": ", std::strerror(errno)));
  }
  const size_t end = key.find_last_not_of(" \t\r\n");
  key.resize(end == std::string::npos ? 0 : end + 1);
  PENG_INPUT_CHECK(!key.empty(), "ledger key file ", path.string(), " is empty");
  return key;
}

VerifyResult verify(const std::filesystem::path& path, const std::string& key,
                    std::vector<json>* records, const PublicKey* public_key) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw os_error(path, "opening", errno);
  const int lock_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (lock_fd < 0) throw os_error(path, "opening", errno);
  struct Close {
    int fd;
    ~Close() { ::close(fd); }
  } close_lock{lock_fd};
  FileLock shared(lock_fd, path, LOCK_SH);
  VerifyResult result;
  result.head = kZeroHash;
  result.hmac_checked = !key.empty();
  if (public_key) result.key_id = public_key->key_id();
  std::optional<Seal> ledger_seal;  // record 0's
  std::string line;
  for (int64_t i = 0; std::getline(in, line); ++i) {
    auto bad = [&](std::string error) {
      result.ok = false;
      result.first_bad = i;
      result.error = std::move(error);
      return result;
    };
    // getline stops at the end of the file without a '\n' only on the last, torn line.
    if (in.eof()) return bad("the last line has no final newline (torn write)");
    json record = json::parse(line, nullptr, false);
    if (record.is_discarded()) return bad("not valid JSON");
    if (!record.is_object()) return bad("not a JSON object");
    if (record.dump() != line) return bad("not in canonical form (edited by hand?)");
    auto v = record.find("v");
    if (v == record.end() || !v->is_number_integer() || v->get<int64_t>() != 1) {
      return bad(v == record.end() ? "record has no \"v\""
                                   : "unknown format version v " + v->dump());
    }
    auto seq = record.find("seq");
    if (seq == record.end() || !seq->is_number_integer()) return bad("record has no integer seq");
    if (seq->get<int64_t>() != i) {
      return bad(detail::concat("seq is ", seq->dump(), ", expected ", i,
                                " (deleted, inserted or reordered record)"));
    }
    auto prev = record.find("prev");
    if (prev == record.end() || !prev->is_string() || prev->get<std::string>() != result.head) {
      return bad(i == 0 ? std::string("prev of the first record is not 64 zeros "
                                      "(deleted, inserted or reordered record)")
                        : detail::concat("prev does not match the hash of line ", i,
                                         " (edited, deleted, inserted or reordered record)"));
    }
    if (public_key) {
      if (const std::string error = check_signature(record, *public_key); !error.empty()) {
        return bad(error);
      }
    }
    if (!key.empty()) {
      auto hmac = record.find("hmac");
      if (hmac == record.end() || !hmac->is_string()) {
        return bad("record has no hmac but a key was given");
      }
      const std::string given = hmac->get<std::string>();
      json body = record;
      body.erase("hmac");
      const std::string expected = hmac_sha256_hex(key, body.dump());
      if (given.size() != expected.size() ||
          CRYPTO_memcmp(given.data(), expected.data(), expected.size()) != 0) {
        return bad("hmac does not match (edited record or wrong key)");
      }
    }
    const Seal seal = seal_of(record);
    if (seal == Seal::kMixed) return bad("record carries both an hmac and an Ed25519 sig");
    if (!ledger_seal) ledger_seal = seal;
    if (seal != *ledger_seal) {
      return bad(detail::concat("record is ", seal_name(seal), " but the ledger's first record ",
                                seal_name(*ledger_seal), " (the kinds never mix)"));
    }
    result.head = sha256_hex(line);
    result.records = i + 1;
    if (records) records->push_back(std::move(record));
  }
  if (in.bad()) throw os_error(path, "reading", errno);
  return result;
}

std::vector<json> read_verified(const std::filesystem::path& path, const std::string& key,
                                const PublicKey* public_key) {
  std::vector<json> records;
  const VerifyResult result = verify(path, key, &records, public_key);
  PENG_INPUT_CHECK(result.ok, "ledger ", path.string(), ": record ", result.first_bad, " (line ",
                   result.first_bad + 1, "): ", result.error);
  return records;
}

}  // namespace peng::ledger
