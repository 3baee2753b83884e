// Ed25519 keys for the usage ledger (OpenSSL 3): records signed with a private key can be
// checked by anyone holding the public key, who cannot sign (an HMAC key, by contrast, both
// checks and forges). Keys are PEM files: PKCS#8 private key, SubjectPublicKeyInfo public key,
// as `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` write them.
//
// A key is named in records by its key id: the first 16 hex digits of the SHA-256 of the raw
// 32-byte public key, so a verifier tells "signed by another key" from "edited".
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace peng::ledger {

class PublicKey;

class SigningKey {
 public:
  // Reads an Ed25519 private key. InputError naming the file when it is readable by group or
  // others (it must be mode 0600 or stricter), missing, encrypted, or not an Ed25519 private
  // key. The key's bytes never appear in a message.
  static SigningKey load(const std::filesystem::path& path);
  SigningKey(SigningKey&&) noexcept;
  SigningKey& operator=(SigningKey&&) noexcept;
  ~SigningKey();

  // Hex Ed25519 signature (128 digits) of `bytes`.
  std::string sign_hex(std::string_view bytes) const;
  const std::string& key_id() const { return key_id_; }
  // The public half (to verify what this key signed).
  PublicKey public_key() const;

 private:
  struct Impl;
  explicit SigningKey(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::string key_id_;
};

class PublicKey {
 public:
  // Reads an Ed25519 public key (InputError naming the file when it is not one).
  static PublicKey load(const std::filesystem::path& path);
  PublicKey(PublicKey&&) noexcept;
  PublicKey& operator=(PublicKey&&) noexcept;
  ~PublicKey();

  // Whether `sig_hex` is this key's signature of `bytes`.
  bool verify(std::string_view bytes, std::string_view sig_hex) const;
  const std::string& key_id() const { return key_id_; }

 private:
  friend class SigningKey;
  struct Impl;
  explicit PublicKey(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::string key_id_;
};

// Writes a new key pair: PREFIX.pem (the private key, created with mode 0600) and
// PREFIX.pub.pem (mode 0644). Refuses (InputError) to overwrite either file. Returns the key id.
std::string write_key_pair(const std::string& prefix);

}  // namespace peng::ledger
