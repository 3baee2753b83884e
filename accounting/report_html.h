// `peng report --html`: one self-contained HTML page of a usage report (accounting/report.h).
//
// The page needs nothing but itself: inline CSS, charts as inline SVG drawn here, no
// JavaScript, no external URL (it opens offline and prints as it shows). It holds
//   - the window and the verification of every ledger (records, head hash, HMACs checked),
//   - four charts, each an <svg> with a stable id, axes with ticks and labels and a legend
//     (one colour per job, the same in every chart); data marks carry class="data":
//       chart-loss   training loss ("loss") over time, one polyline per job
//       chart-mfu    "interval_mfu" (%) over time, one polyline per job
//       chart-power  "power_w" over time, one polyline per job; without any power value it
//                    shows the text "no power data (NVML not available)" instead
//       chart-hours  device-hours per job in the window, one bar (rect) per job
//   - the summary tables per job, user, device and period, the total and the jobs' status.
// Every string from the records (job ids, users, projects, devices, statuses, paths) is
// HTML-escaped.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "peng/accounting/report.h"

namespace peng::report {

std::string to_html(const Report& r);

// `s` with & < > " ' as HTML entities.
std::string html_escape(std::string_view s);

// An HTML table of escaped cells; `align` holds per column 'l' (text), 'r' (a number:
// right-aligned) or 't' (a time: never wrapped).
std::string html_table(const std::vector<std::string>& head,
                       const std::vector<std::vector<std::string>>& rows, std::string_view align);

}  // namespace peng::report
