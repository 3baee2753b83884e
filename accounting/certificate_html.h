// `peng certify`'s printable page: one self-contained HTML page of a delivery certificate
// (accounting/certificate.h), every label in Chinese (zh-CN) and English, since the people
// who file compute-voucher claims read Chinese.
//
// Like the usage report's page (accounting/report_html.h): inline CSS, no JavaScript, no
// external URL; every string from the certificate is HTML-escaped. Sections carry stable ids:
//   contract   contract, supplier, customer, project, period, issue time
//   summary    device-hours, capacity (PFLOP/s-hours), model FLOPs, average MFU, goodput,
//              tokens, energy ("未计量 / not measured" when not metered), jobs
//   devices    per device model, with the peak each was rated at and its source
//   jobs       the jobs: ids, users, start/end, config hashes, checkpoint steps
//   ledgers    the ledgers covered: record counts, first and head hashes, key ids
//   signature  key id, Ed25519 signature and how to verify
// The page shows the certificate; what is signed is the JSON file.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace peng::certificate {

std::string to_html(const nlohmann::json& cert);

}  // namespace peng::certificate
