// The HTML page of `peng report --html`: four charts with stable ids, nothing external,
// record strings escaped, the no-power message; and the page rendered by headless Chromium
// (DOM with data marks in every chart, no console errors, a non-trivial screenshot). With
// PENG_REPORT_SCREENSHOT=PATH the screenshot is copied there (for docs/).
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <sstream>

#include "peng/accounting/report_html.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The n-th record of job number `j` (of `job`), on 2025-03-01, with the values the charts
// plot; cumulative fields grow linearly, job j runs on 8 >> j devices.
json record(const std::string& job, int j, int n, bool with_power) {
  const int minute = 25 * j + 10 * n, devices = 8 >> j;
  char time[32];
  std::snprintf(time, sizeof time, "2025-03-01T%02d:%02d:00Z", minute / 60, minute % 60);
  const double wall = 600.0 * n, mfu = 0.3 + 0.02 * ((n + j) % 5);
  return {{"kind", "interval"},
          {"job", job},
          {"project", "demo"},
          {"user", job == "<script>alert(1)</script>" ? "mallory & co" : "alice"},
          {"hosts", {"node1"}},
          {"device", "NVIDIA H100 80GB HBM3"},
          {"devices", devices},
          {"start", "2025-03-01T00:00:00Z"},
          {"config_hash", std::string(64, 'a')},
          {"time", time},
          {"status", "running"},
          {"wall_s", wall},
          {"device_seconds", wall * devices},
          {"productive_s", wall * 0.9},
          {"steps", 50 * n},
          {"step", 50 * n},
          {"tokens", 400000 * n},
          {"model_flops", 1e18 * n},
          {"peak_flops", 9.89e14},
          {"mfu", mfu},
          {"energy_j", with_power ? json(4.2e6 * n) : json(nullptr)},
          {"checkpoint_steps", json::array()},
          {"loss", (8.0 - j) / (1 + 0.3 * n)},
          {"interval_mfu", mfu},
          {"power_w", with_power ? json(devices * (650.0 + 40 * (n % 3))) : json(nullptr)}};
}

// Three jobs of `intervals` records each, one named like an HTML injection.
report::Report sample(bool with_power, int intervals = 12) {
  report::Ledger l;
  l.path = "usage<1>.jsonl";
  l.head = std::string(64, 'c');
  l.hmac_checked = true;
  const std::vector<std::string> jobs = {"slurm-101", "slurm-102", "<script>alert(1)</script>"};
  for (int n = 1; n <= intervals; ++n) {
    for (size_t j = 0; j < jobs.size(); ++j)
      l.lines.push_back(record(jobs[j], int(j), n, with_power));
  }
  l.records = int64_t(l.lines.size());
  return report::build_report({l}, {});
}

// The <svg> element with id `id` in `page` (empty when none).
std::string chart(const std::string& page, const std::string& id) {
  const size_t at = page.find("id=\"" + id + "\"");
  if (at == std::string::npos) return {};
  const size_t end = page.find("</svg>", at);
  return page.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

TEST(ReportHtml, SelfContainedChartsAndEscaping) {
  const std::string page = report::to_html(sample(true));
  for (const char* id : {"chart-loss", "chart-mfu", "chart-power"}) {
    const std::string svg = chart(page, id);
    ASSERT_FALSE(svg.empty()) << id;
    EXPECT_NE(svg.find("<polyline class=\"data\""), std::string::npos) << id;
    EXPECT_NE(svg.find("time (UTC)"), std::string::npos) << id;
  }
  EXPECT_NE(chart(page, "chart-hours").find("<rect class=\"data\""), std::string::npos);
  EXPECT_EQ(page.find("no power data"), std::string::npos);
  for (const char* external : {"http://", "https://", "src=", "<script", "url("}) {
    EXPECT_EQ(page.find(external), std::string::npos) << external;
  }
  EXPECT_NE(page.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(page.find("mallory &amp; co"), std::string::npos);
  EXPECT_NE(page.find("usage&lt;1&gt;.jsonl"), std::string::npos);
  EXPECT_NE(page.find("hash chain and HMACs checked"), std::string::npos);
  EXPECT_NE(page.find(std::string(64, 'c')), std::string::npos);
}

TEST(ReportHtml, NoPowerDataShowsAMessage) {
  const std::string page = report::to_html(sample(false));
  const std::string power = chart(page, "chart-power");
  EXPECT_NE(power.find("no power data (NVML not available)"), std::string::npos);
  EXPECT_EQ(power.find("<polyline"), std::string::npos);
  EXPECT_NE(chart(page, "chart-loss").find("<polyline class=\"data\""), std::string::npos);
  const std::string empty = report::to_html(report::build_report({}, {}));
  EXPECT_NE(chart(empty, "chart-hours").find("no jobs in the window"), std::string::npos);
  EXPECT_NE(chart(empty, "chart-loss").find("no loss data"), std::string::npos);
}

// Runs `command` through the shell; its exit status.
int shell(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(ReportHtml, RendersInHeadlessChromium) {
  if (shell("command -v chromium >/dev/null 2>&1") != 0) GTEST_SKIP() << "no chromium on PATH";
  testing::TempDir tmp;
  const fs::path page = tmp / "report.html", dom = tmp / "dom.html", png = tmp / "report.png";
  testing::write_file(page, report::to_html(sample(true)));
  const std::string chromium =
      "timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage "
      "--enable-logging=stderr --v=0 ";
  const std::string url = "file://" + page.string();

  ASSERT_EQ(shell(chromium + "--dump-dom " + url + " >" + dom.string() + " 2>" +
                  (tmp / "dom.err").string()),
            0)
      << testing::read_file(tmp / "dom.err");
  const std::string rendered = testing::read_file(dom);
  for (const char* id : {"chart-loss", "chart-mfu", "chart-power", "chart-hours"}) {
    const std::string svg = chart(rendered, id);
    ASSERT_FALSE(svg.empty()) << id << " not in the DOM";
    EXPECT_TRUE(svg.find("<polyline class=\"data\"") != std::string::npos ||
                svg.find("<rect class=\"data\"") != std::string::npos)
        << id << " has no data marks";
  }

  ASSERT_EQ(shell(chromium + "--screenshot=" + png.string() + " --window-size=1200,1600 " + url +
                  " >/dev/null 2>" + (tmp / "shot.err").string()),
            0)
      << testing::read_file(tmp / "shot.err");
  ASSERT_TRUE(fs::exists(png));
  EXPECT_GT(fs::file_size(png), 10u * 1024);

  // Chromium warns about D-Bus and GPUs without a display; only page errors count.
  for (const fs::path& err : {tmp / "dom.err", tmp / "shot.err"}) {
    std::istringstream lines(testing::read_file(err));
    for (std::string line; std::getline(lines, line);) {
      for (const char* bad : {"CONSOLE", "Uncaught", "Failed to load", "net::ERR_"}) {
        EXPECT_EQ(line.find(bad), std::string::npos) << err << ": " << line;
      }
    }
  }
  if (const char* keep = std::getenv("PENG_REPORT_SCREENSHOT")) {
    fs::copy_file(png, keep, fs::copy_options::overwrite_existing);
  }
}

}  // namespace
}  // namespace peng
