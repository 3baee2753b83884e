#include "peng/core/tokenizer/unicode.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>

#include "peng/core/error.h"

namespace peng {

namespace {

const icu::Normalizer2& nfc_instance() {
  static const icu::Normalizer2* nfc = [] {
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* n = icu::Normalizer2::getNFCInstance(status);
    PENG_CHECK(U_SUCCESS(status) && n != nullptr, "ICU: no NFC normalizer (", u_errorName(status),
               ")");
    return n;
  }();
  return *nfc;
}

bool is_ascii(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

}  // namespace

std::optional<std::string> nfc_if_changed(std::string_view text) {
  if (is_ascii(text)) return std::nullopt;
  const icu::Normalizer2& nfc = nfc_instance();
  const icu::StringPiece piece(text.data(), int32_t(text.size()));
  UErrorCode status = U_ZERO_ERROR;
  if (nfc.isNormalizedUTF8(piece, status) && U_SUCCESS(status)) return std::nullopt;
  std::string out;
  out.reserve(text.size());
  icu::StringByteSink<std::string> sink(&out);
  status = U_ZERO_ERROR;
  nfc.normalizeUTF8(0, piece, sink, nullptr, status);
  PENG_CHECK(U_SUCCESS(status), "ICU NFC normalization failed: ", u_errorName(status));
  return out;
}

bool is_white_space(uint32_t cp) { return u_hasBinaryProperty(UChar32(cp), UCHAR_WHITE_SPACE); }

bool is_word_char(uint32_t cp) {
  const UChar32 c = UChar32(cp);
  if (u_hasBinaryProperty(c, UCHAR_ALPHABETIC) || u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL)) {
    return true;
  }
  const int32_t mask = U_GET_GC_MASK(c);
  return (mask & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) != 0;
}

}  // namespace peng
