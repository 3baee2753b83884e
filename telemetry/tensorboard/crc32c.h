// CRC-32C (Castagnoli; reflected polynomial 0x82F63B78), the checksum of TFRecord
// framing, and TFRecord's "masked" form of it.
//
// Written here because no Debian package provides a CRC-32C usable by peng:
// libcrc32c-dev is not in bookworm, and bookworm's abseil has no crc module.
// A 256-entry table, one byte per step: event records are small, so speed is no concern.
#pragma once

#include <cstddef>
#include <cstdint>

namespace peng::tensorboard {

// CRC-32C of n bytes (the RFC 3720 / iSCSI checksum; crc32c("123456789") == 0xE3069283).
uint32_t crc32c(const void* data, size_t n);

// Continues a finished CRC-32C over more bytes:
// crc32c_extend(crc32c(a, na), b, nb) == crc32c of a followed by b.
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n);

// TFRecord's masked CRC of n bytes: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t masked_crc32c(const void* data, size_t n);

}  // namespace peng::tensorboard
