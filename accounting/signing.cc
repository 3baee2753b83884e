#include "peng/accounting/signing.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "peng/accounting/ledger.h"
#include "peng/core/error.h"

namespace peng::ledger {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
struct CtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_MD_CTX, CtxFree>;

std::string read_all(const std::filesystem::path& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  PENG_INPUT_CHECK(bool(in), "cannot read ", what, " ", path.string(), ": ", std::strerror(errno));
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Text holding a private key, wiped (OPENSSL_cleanse) when it goes out of scope.
struct Secret {
  std::string text;
  Secret() = default;
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;
  ~Secret() { OPENSSL_cleanse(text.data(), text.size()); }
};

// Reads the private key file at `path` into `out` through one descriptor whose mode is checked
// (no window between the check and the read): refused when group or others may read it.
void read_private_key(const std::filesystem::path& path, Secret& out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  PENG_INPUT_CHECK(fd >= 0, "cannot read signing key ", path.string(), ": ", std::strerror(errno));
  struct Close {
    int fd;
    ~Close() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  PENG_INPUT_CHECK(::fstat(fd, &st) == 0 && S_ISREG(st.st_mode), "signing key ", path.string(),
                   " is not a regular file");
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
  PENG_INPUT_CHECK((st.st_mode & 077) == 0, "signing key ", path.string(),
                   " is readable by others (mode ", mode, "): chmod 600 ", path.string());
  out.text.resize(size_t(st.st_size));  // one buffer: no copy left behind by growing it
  size_t got = 0;
  while (got < out.text.size()) {
    const ssize_t n = ::read(fd, out.text.data() + got, out.text.size() - got);
    PENG_INPUT_CHECK(n >= 0, "cannot read signing key ", path.string(), ": ", std::strerror(errno));
    if (n == 0) break;
    got += size_t(n);
  }
  out.text.resize(got);
}

// An Ed25519 key from PEM text, or null.
Pkey parse_pem(const std::string& pem, bool is_private) {
  Bio bio(BIO_new_mem_buf(pem.data(), int(pem.size())));
  PENG_CHECK(bio != nullptr, "OpenSSL: BIO_new_mem_buf failed");
  // No passphrase prompt: an encrypted key fails here instead of waiting on a terminal.
  pem_password_cb* no_passphrase = [](char*, int, int, void*) { return -1; };
  Pkey key(is_private ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr)
                      : PEM_read_bio_PUBKEY(bio.get(), nullptr, no_passphrase, nullptr));
  if (key && EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_ED25519) key.reset();
  return key;
}

// The raw 32 bytes of an Ed25519 key's public half.
std::array<unsigned char, 32> raw_public_key(EVP_PKEY* key) {
  std::array<unsigned char, 32> raw;
  size_t n = raw.size();
  PENG_CHECK(EVP_PKEY_get_raw_public_key(key, raw.data(), &n) == 1 && n == raw.size(),
             "OpenSSL: cannot read the Ed25519 public key");
  return raw;
}

std::string key_id_of(EVP_PKEY* key) {
  const std::array<unsigned char, 32> raw = raw_public_key(key);
  return sha256_hex(std::string_view(reinterpret_cast<const char*>(raw.data()), raw.size()))
      .substr(0, 16);
}

std::string pem_of(EVP_PKEY* key, bool is_private) {
  // A private key's buffer is cleared when freed (secure-memory BIO).
  Bio bio(BIO_new(is_private ? BIO_s_secmem() : BIO_s_mem()));
  PENG_CHECK(bio != nullptr, "OpenSSL: BIO_new failed");
  const int ok =
      is_private ? PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr)
                 : PEM_write_bio_PUBKEY(bio.get(), key);
  PENG_CHECK(ok == 1, "OpenSSL: cannot write the key as PEM");
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, size_t(n));
}

// Creates `path` with `mode` (refusing an existing file) and writes `bytes`.
void write_new_file(const std::string& path, const std::string& bytes, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  PENG_INPUT_CHECK(fd >= 0 || errno != EEXIST, path, " exists: not overwriting a key file");
  if (fd < 0) throw IoError(detail::concat("cannot create ", path, ": ", std::strerror(errno)));
  const bool ok = ::write(fd, bytes.data(), bytes.size()) == ssize_t(bytes.size()) &&
                  ::fchmod(fd, mode) == 0 && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok) throw IoError(detail::concat("cannot write ", path, ": ", std::strerror(err)));
}

std::vector<unsigned char> from_hex(std::string_view hex) {
  std::vector<unsigned char> out;
  if (hex.size() % 2 != 0) return {};
  for (size_t i = 0; i < hex.size(); i += 2) {
    const auto digit = [](char c) {
      return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    };
    const int hi = digit(hex[i]), lo = digit(hex[i + 1]);
    if (hi < 0 || lo < 0) return {};
    out.push_back(static_cast<unsigned char>(hi * 16 + lo));
  }
  return out;
}

}  // namespace

struct SigningKey::Impl {
  Pkey key;
};
struct PublicKey::Impl {
  Pkey key;
};

SigningKey::SigningKey(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)), key_id_(key_id_of(impl_->key.get())) {}
SigningKey::SigningKey(SigningKey&&) noexcept = default;
SigningKey& SigningKey::operator=(SigningKey&&) noexcept = default;
SigningKey::~SigningKey() = default;

SigningKey SigningKey::load(const std::filesystem::path& path) {
  Secret pem;
  read_private_key(path, pem);
  auto impl = std::make_unique<Impl>();
  impl->key = parse_pem(pem.text, true);
  PENG_INPUT_CHECK(impl->key != nullptr, "signing key ", path.string(),
                   " is not an unencrypted Ed25519 private key in PEM (peng keygen writes one)");
  return SigningKey(std::move(impl));
}

std::string SigningKey::sign_hex(std::string_view bytes) const {
  Ctx ctx(EVP_MD_CTX_new());
  unsigned char sig[64];
  size_t n = sizeof sig;
  PENG_CHECK(
      ctx && EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, impl_->key.get()) == 1 &&
          EVP_DigestSign(ctx.get(), sig, &n, reinterpret_cast<const unsigned char*>(bytes.data()),
                         bytes.size()) == 1,
      "OpenSSL Ed25519 signing failed");
  return to_hex(sig, n);
}

PublicKey SigningKey::public_key() const {
  const std::array<unsigned char, 32> raw = raw_public_key(impl_->key.get());
  auto impl = std::make_unique<PublicKey::Impl>();
  impl->key.reset(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw.data(), raw.size()));
  PENG_CHECK(impl->key != nullptr, "OpenSSL: cannot make the Ed25519 public key");
  return PublicKey(std::move(impl));
}

PublicKey::PublicKey(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)), key_id_(key_id_of(impl_->key.get())) {}
PublicKey::PublicKey(PublicKey&&) noexcept = default;
PublicKey& PublicKey::operator=(PublicKey&&) noexcept = default;
PublicKey::~PublicKey() = default;

PublicKey PublicKey::load(const std::filesystem::path& path) {
  auto impl = std::make_unique<Impl>();
  impl->key = parse_pem(read_all(path, "public key"), false);
  PENG_INPUT_CHECK(impl->key != nullptr, "public key ", path.string(),
                   " is not an Ed25519 public key in PEM (peng keygen writes PREFIX.pub.pem)");
  return PublicKey(std::move(impl));
}

bool PublicKey::verify(std::string_view bytes, std::string_view sig_hex) const {
  const std::vector<unsigned char> sig = from_hex(sig_hex);
  if (sig.size() != 64) return false;
  Ctx ctx(EVP_MD_CTX_new());
  return ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, impl_->key.get()) == 1 &&
         EVP_DigestVerify(ctx.get(), sig.data(), sig.size(),
                          reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size()) == 1;
}

std::string write_key_pair(const std::string& prefix) {
  Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  PENG_CHECK(key != nullptr, "OpenSSL: Ed25519 key generation failed");
  const std::string priv = prefix + ".pem", pub = prefix + ".pub.pem";
  PENG_INPUT_CHECK(!std::filesystem::exists(pub), pub, " exists: not overwriting a key file");
  Secret pem;
  pem.text = pem_of(key.get(), true);
  write_new_file(priv, pem.text, 0600);
  try {
    write_new_file(pub, pem_of(key.get(), false), 0644);
  } catch (...) {
    std::filesystem::remove(priv);  // no half pair left behind
    throw;
  }
  return key_id_of(key.get());
}

}  // namespace peng::ledger
