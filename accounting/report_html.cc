#include "peng/accounting/report_html.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <string_view>
#include <utility>
#include <vector>

namespace peng::report {

namespace {

// Tableau 10: one colour per job (in job order), the same in every chart.
constexpr const char* kPalette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

// Chart geometry (SVG user units): the plot area is inset by these margins.
constexpr double kWidth = 540, kHeight = 300;
constexpr double kLeft = 64, kRight = 18, kTop = 30, kBottom = 46;
constexpr double kBarLeft = 170, kBarRow = 26;

constexpr const char* kCss = R"(
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:1.5em;margin:0 0 4px}h2{font-size:1.15em;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin-bottom:8px}
th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th,td.num,td.time{white-space:nowrap}th{background:#f4f4f4}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:12px;word-break:break-all;white-space:normal}
.ok{color:#1a7f37;font-weight:600}.muted{color:#666;font-size:13px}
.charts{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0;border:1px solid #ddd;border-radius:4px;padding:6px}
svg{display:block;font-size:11px}svg .title{font-size:14px;font-weight:600}
svg .grid{stroke:#e6e6e6}svg .axis{stroke:#444}svg .empty{font-size:14px;fill:#a33}
ul.legend{list-style:none;margin:6px 0 0;padding:0;font-size:12px}
ul.legend li{display:inline-block;margin-right:14px}
.swatch{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}
)";

// At most `n` bytes of `s` (not splitting a UTF-8 sequence), with "…" when cut.
std::string shorten(const std::string& s, size_t n) {
  if (s.size() <= n) return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n) + "\u2026";
}

struct Axis {
  double lo = 0, hi = 1;
  std::vector<double> ticks;
};

// About five ticks at 1, 2 or 5 x 10^k covering [lo, hi] (from 0 when `from_zero`).
Axis value_axis(double lo, double hi, bool from_zero) {
  if (from_zero) lo = std::min(lo, 0.0);
  if (hi - lo <= 0) {
    const double pad = std::max(std::fabs(hi) * 0.1, 1e-9);
    hi += pad;
    if (!from_zero || lo - pad >= 0) lo -= pad;
  }
  const double raw = (hi - lo) / 5, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  const double step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  Axis a;
  const double first = std::floor(lo / step), last = std::ceil(hi / step);
  a.lo = first * step;
  a.hi = last * step;
  for (double i = first; i <= last + 0.5; ++i) a.ticks.push_back(i * step);
  return a;
}

// Ticks at round UTC times (at most 6 in [lo, hi]) and their strftime label format.
std::pair<std::vector<double>, const char*> time_ticks(double lo, double hi) {
  static constexpr double kSteps[] = {
      1,    2,    5,     10,    15,    30,    60,     120,    300,     600,     900,     1800,
      3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800, 1209600, 2592000, 7776000, 31536000};
  double step = kSteps[std::size(kSteps) - 1];
  for (double s : kSteps) {
    if ((hi - lo) / s <= 6) {
      step = s;
      break;
    }
  }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step) * step; t <= hi; t += step) ticks.push_back(t);
  return {ticks, step < 60 ? "%H:%M:%S" : step < 86400 ? "%m-%d %H:%M" : "%Y-%m-%d"};
}

std::string utc(double t, const char* fmt) {
  const std::time_t tt = std::time_t(std::floor(t));
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, fmt, &tm);
  return buf;
}

std::string svg_open(const std::string& id, const std::string& title, double height) {
  return format("<svg id=\"%s\" viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" ",
                id.c_str(), kWidth, height, kWidth, height) +
         "role=\"img\" aria-label=\"" + html_escape(title) + "\">\n" +
         format("<text class=\"title\" x=\"%.0f\" y=\"18\">", kLeft) + html_escape(title) +
         "</text>\n";
}

std::string empty_message(const std::string& text, double height) {
  return format(
             "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"#fafafa\" "
             "stroke=\"#ddd\"/>\n<text class=\"empty\" x=\"%.0f\" y=\"%.0f\" "
             "text-anchor=\"middle\">",
             kLeft, kTop, kWidth - kLeft - kRight, height - kTop - kBottom,
             (kLeft + kWidth - kRight) / 2, (kTop + height - kBottom) / 2) +
         html_escape(text) + "</text>\n";
}

struct Line {
  std::string job, color;
  std::vector<std::pair<double, double>> points;  // (Unix time, value)
};

std::string legend(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string out = "<ul class=\"legend\">";
  for (const auto& [job, color] : entries) {
    out += "<li><span class=\"swatch\" style=\"background:" + color + "\"></span>" +
           html_escape(job) + "</li>";
  }
  return out + "</ul>\n";
}

// A time-series chart: one polyline (and point markers) per line.
std::string line_chart(const std::string& id, const std::string& title, const std::string& y_label,
                       const std::vector<Line>& lines, const std::string& empty_text,
                       bool from_zero) {
  std::string svg = svg_open(id, title, kHeight);
  if (lines.empty())
    return "<figure>" + svg + empty_message(empty_text, kHeight) + "</svg></figure>\n";
  double t0 = INFINITY, t1 = -INFINITY, v0 = INFINITY, v1 = -INFINITY;
  for (const Line& l : lines) {
    for (const auto& [t, v] : l.points) {
      t0 = std::min(t0, t), t1 = std::max(t1, t), v0 = std::min(v0, v), v1 = std::max(v1, v);
    }
  }
  if (t1 - t0 < 60) t0 -= 30, t1 += 30;
  const Axis y = value_axis(v0, v1, from_zero);
  const double x_right = kWidth - kRight, y_bottom = kHeight - kBottom;
  const auto px = [&](double t) { return kLeft + (t - t0) / (t1 - t0) * (x_right - kLeft); };
  const auto py = [&](double v) {
    return y_bottom - (v - y.lo) / (y.hi - y.lo) * (y_bottom - kTop);
  };
  for (double v : y.ticks) {
    svg += format(
        "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
        kLeft, py(v), x_right, py(v), kLeft - 6, py(v) + 4, v);
  }
  const auto [ticks, fmt] = time_ticks(t0, t1);
  for (double t : ticks) {
    svg += format(
               "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
               "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">",
               px(t), y_bottom, px(t), y_bottom + 5, px(t), y_bottom + 18) +
           utc(t, fmt) + "</text>\n";
  }
  svg += format(
      "<line class=\"axis\" x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\"/>"
      "<line class=\"axis\" x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\"/>\n"
      "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">time (UTC)</text>\n"
      "<text transform=\"translate(14 %.0f) rotate(-90)\" text-anchor=\"middle\">",
      kLeft, kTop, kLeft, y_bottom, kLeft, y_bottom, x_right, y_bottom, (kLeft + x_right) / 2,
      kHeight - 8, (kTop + y_bottom) / 2);
  svg += html_escape(y_label) + "</text>\n";
  std::vector<std::pair<std::string, std::string>> entries;
  for (const Line& l : lines) {
    std::string pts, marks;
    for (const auto& [t, v] : l.points) {
      pts += format("%s%.1f,%.1f", pts.empty() ? "" : " ", px(t), py(v));
      marks += format("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>", px(t), py(v),
                      l.color.c_str());
    }
    svg += "<polyline class=\"data\" fill=\"none\" stroke=\"" + l.color +
           "\" stroke-width=\"1.8\" points=\"" + pts + "\"><title>" + html_escape(l.job) +
           "</title></polyline>\n" + marks + "\n";
    entries.emplace_back(l.job, l.color);
  }
  return "<figure>" + svg + "</svg>" + legend(entries) + "</figure>\n";
}

// Device-hours per job: one horizontal bar per job.
std::string hours_chart(const std::vector<Row>& rows,
                        const std::map<std::string, std::string>& colors) {
  const std::string title = "device-hours per job";
  const double height = kTop + kBarRow * double(std::max<size_t>(rows.size(), 3)) + kBottom;
  std::string svg = svg_open("chart-hours", title, height);
  if (rows.empty()) {
    return "<figure>" + svg + empty_message("no jobs in the window", height) + "</svg></figure>\n";
  }
  double most = 0;
  for (const Row& r : rows) most = std::max(most, r.device_hours);
  const Axis x = value_axis(0, most, true);
  const double x_right = kWidth - kRight, y_bottom = height - kBottom;
  const auto px = [&](double v) { return kBarLeft + v / x.hi * (x_right - kBarLeft); };
  for (double v : x.ticks) {
    svg += format(
        "<line class=\"grid\" x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\"/>"
        "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%g</text>\n",
        px(v), kTop, px(v), y_bottom + 5, px(v), y_bottom + 18, v);
  }
  svg += format(
      "<line class=\"axis\" x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\"/>"
      "<line class=\"axis\" x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\"/>\n"
      "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">device-hours</text>\n",
      kBarLeft, kTop, kBarLeft, y_bottom, kBarLeft, y_bottom, x_right, y_bottom,
      (kBarLeft + x_right) / 2, height - 8);
  std::vector<std::pair<std::string, std::string>> entries;
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    const std::string& color = colors.at(r.key);
    const double y = kTop + kBarRow * double(i) + 4;
    svg +=
        format("<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">", kBarLeft - 6,
               y + kBarRow / 2 + 1) +
        html_escape(shorten(r.key, 20)) + "</text>" +
        format(
            "<rect class=\"data\" x=\"%.0f\" y=\"%.1f\" width=\"%.1f\" height=\"%.0f\" "
            "fill=\"%s\">",
            kBarLeft, y, std::max(px(r.device_hours) - kBarLeft, 1.0), kBarRow - 8, color.c_str()) +
        "<title>" + html_escape(r.key) +
        format(": %.3f device-hours</title></rect>", r.device_hours) +
        // The value after the bar, or inside its end (in white) where it would not fit.
        (px(r.device_hours) > x_right - 56
             ? format("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#fff\">%.3g</text>\n",
                      px(r.device_hours) - 4, y + kBarRow / 2 + 1, r.device_hours)
             : format("<text x=\"%.1f\" y=\"%.1f\">%.3g</text>\n", px(r.device_hours) + 4,
                      y + kBarRow / 2 + 1, r.device_hours));
    entries.emplace_back(r.key, color);
  }
  return "<figure>" + svg + "</svg>" + legend(entries) + "</figure>\n";
}

// The lines of one per-record value: the points of every job that has the value.
std::vector<Line> lines_of(const Report& r, const std::map<std::string, std::string>& colors,
                           std::optional<double> Point::*field, double scale) {
  std::vector<Line> lines;
  for (const auto& [job, points] : r.series) {
    Line l{job, colors.at(job), {}};
    for (const Point& p : points) {
      if (p.*field) l.points.emplace_back(p.time, *(p.*field) * scale);
    }
    if (!l.points.empty()) lines.push_back(std::move(l));
  }
  return lines;
}

std::string rows_table(const std::string& first, const std::vector<Row>& rows) {
  std::vector<std::vector<std::string>> cells;
  for (const Row& r : rows) cells.push_back(row_cells(r));
  return html_table(
      {first, "jobs", "device_hours", "kWh", "tokens", "model_flops", "avg_mfu", "goodput"}, cells,
      "lrrrrrrr");
}

std::string ledgers_section(const Report& r) {
  std::string out =
      "<h2>Ledgers</h2>\n<table><thead><tr><th>ledger</th><th class=\"num\">"
      "records</th><th>head (SHA-256 of the last line)</th><th>verification</th>"
      "</tr></thead><tbody>\n";
  for (const Ledger& l : r.ledgers) {
    out += "<tr><td>" + html_escape(l.path) + "</td><td class=\"num\">" +
           std::to_string(l.records) + "</td><td><code>" + html_escape(l.head) +
           "</code></td><td><span class=\"ok\">ok</span> " +
           (!l.key_id.empty()
                ? "hash chain and Ed25519 signatures (key " + html_escape(l.key_id) + ") checked"
            : l.hmac_checked ? std::string("hash chain and HMACs checked")
                             : std::string("hash chain checked (no key: signatures not checked)")) +
           "</td></tr>\n";
  }
  return out + "</tbody></table>\n";
}

std::string jobs_section(const Report& r) {
  std::vector<std::vector<std::string>> cells;
  for (const JobDetail& j : r.jobs) {
    std::string hosts;
    for (const std::string& h : j.hosts) hosts += (hosts.empty() ? "" : " ") + h;
    cells.push_back({j.job, j.user, j.project, j.device, std::to_string(j.devices), hosts, j.start,
                     j.end.value_or("(running)"), std::to_string(j.steps), std::to_string(j.step),
                     std::to_string(j.checkpoints), j.status});
  }
  return "<h2>Jobs</h2>\n" + html_table({"job", "user", "project", "device", "devices", "hosts",
                                         "start", "end", "steps", "step", "checkpoints", "status"},
                                        cells, "llllrlttrrrl");
}

}  // namespace

std::string html_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string html_table(const std::vector<std::string>& head,
                       const std::vector<std::vector<std::string>>& rows, std::string_view align) {
  const auto cls = [&](size_t c) {
    return align[c] == 'r' ? " class=\"num\"" : align[c] == 't' ? " class=\"time\"" : "";
  };
  std::string out = "<table><thead><tr>";
  for (size_t c = 0; c < head.size(); ++c) {
    out += std::string("<th") + cls(c) + ">" + html_escape(head[c]) + "</th>";
  }
  out += "</tr></thead><tbody>\n";
  for (const auto& row : rows) {
    out += "<tr>";
    for (size_t c = 0; c < row.size(); ++c) {
      out += std::string("<td") + cls(c) + ">" + html_escape(row[c]) + "</td>";
    }
    out += "</tr>\n";
  }
  return out + "</tbody></table>\n";
}

std::string to_html(const Report& r) {
  std::map<std::string, std::string> colors;
  for (const auto& [job, points] : r.series) {
    colors[job] = kPalette[colors.size() % std::size(kPalette)];
  }
  const Options& o = r.options;
  std::string out =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<title>peng usage report</title>\n<style>" +
      std::string(kCss) + "</style>\n</head>\n<body>\n<h1>peng usage report</h1>\n";
  out += "<p class=\"muted\">window [" + (o.from ? format_time(*o.from) : "start") + ", " +
         (o.to ? format_time(*o.to) : "end") + ")" +
         (o.project ? ", project " + html_escape(*o.project) : std::string()) + ", " +
         std::to_string(r.records_in_window) + " records in the window</p>\n";
  out += ledgers_section(r);
  out += "<h2>Charts</h2>\n<div class=\"charts\">\n";
  out += line_chart("chart-loss", "training loss", "loss", lines_of(r, colors, &Point::loss, 1),
                    "no loss data", false);
  out += line_chart("chart-mfu", "MFU per interval", "interval MFU (%)",
                    lines_of(r, colors, &Point::interval_mfu, 100), "no MFU data", true);
  out += line_chart("chart-power", "power of the job's devices", "power (W)",
                    lines_of(r, colors, &Point::power_w, 1), "no power data (NVML not available)",
                    true);
  out += hours_chart(r.groups.at("job"), colors);
  out += "</div>\n<h2>Total</h2>\n" + rows_table("total", {r.total});
  for (const std::string& g : group_names()) {
    const std::string name = g == "period" ? (o.period == Period::kDay ? "day" : "month") : g;
    out += "<h2>Per " + name + "</h2>\n" + rows_table(name, r.groups.at(g));
  }
  out += jobs_section(r);
  out +=
      "<p class=\"muted\">device_hours: device-seconds / 3600 (GPU-hours on GPUs, one CPU "
      "process per device on CPUs); kWh: metered energy, n/a when a record has no meter; "
      "avg_mfu: model FLOPs / (step device-seconds &times; peak FLOP/s); goodput: productive "
      "device-seconds / device-seconds. Each record counts by its delta over the job's "
      "previous record (docs: accounting/report.h).</p>\n";
  return out + "</body>\n</html>\n";
}

}  // namespace peng::report
