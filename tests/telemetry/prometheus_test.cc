// Prometheus text exposition: exact output (escaping, special values), name validation,
// and the atomic textfile write that node_exporter's textfile collector relies on.
#include "peng/telemetry/prometheus.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <limits>

#include "peng/core/error.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using peng::testing::read_file;
using peng::testing::TempDir;

constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<PromMetric> sample_metrics() {
  return {
      {"peng_mfu",
       "Model FLOPs utilization \"MFU\", 0..1\\job\nper rank",
       "gauge",
       {{{{"job", "gpt \"small\""}, {"path", "C:\\runs\nx"}}, 0.5},
        {{}, std::numeric_limits<double>::quiet_NaN()}}},
      {"peng_tokens_total",
       "Tokens trained.",
       "counter",
       {{{{"rank", "0"}}, 1e20},
        {{{"rank", "1"}}, kInf},
        {{{"rank", "2"}}, -kInf},
        {{{"rank", "3"}}, 0.1},
        {{{"rank", "4"}}, 123456789},
        {{{"rank", "5"}}, -2.5e-7}}},
  };
}

const char* kExpected =
    "# HELP peng_mfu Model FLOPs utilization \"MFU\", 0..1\\\\job\\nper rank\n"
    "# TYPE peng_mfu gauge\n"
    "peng_mfu{job=\"gpt \\\"small\\\"\",path=\"C:\\\\runs\\nx\"} 0.5\n"
    "peng_mfu NaN\n"
    "# HELP peng_tokens_total Tokens trained.\n"
    "# TYPE peng_tokens_total counter\n"
    "peng_tokens_total{rank=\"0\"} 1e+20\n"
    "peng_tokens_total{rank=\"1\"} +Inf\n"
    "peng_tokens_total{rank=\"2\"} -Inf\n"
    "peng_tokens_total{rank=\"3\"} 0.1\n"
    "peng_tokens_total{rank=\"4\"} 123456789\n"
    "peng_tokens_total{rank=\"5\"} -2.5e-07\n";

TEST(Prometheus, ExactText) { EXPECT_EQ(format_prometheus(sample_metrics()), kExpected); }

TEST(Prometheus, ValuesRoundTrip) {
  for (double v : {1.0 / 3.0, 6.02214076e23, 5e-324, -0.0}) {
    std::string text = format_prometheus({{"x", "h", "gauge", {{{}, v}}}});
    std::string value = text.substr(text.rfind(' ') + 1);
    EXPECT_EQ(std::strtod(value.c_str(), nullptr), v) << value;
  }
}

TEST(Prometheus, EmptyMetricHasHeaderOnly) {
  EXPECT_EQ(format_prometheus({{"a:b_9", "", "counter", {}}}),
            "# HELP a:b_9 \n# TYPE a:b_9 counter\n");
}

std::string format_error(const std::vector<PromMetric>& metrics) {
  try {
    format_prometheus(metrics);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Prometheus, RejectsInvalidNames) {
  for (const char* name : {"", "1abc", "a-b", "a b", "é"}) {
    EXPECT_NE(format_error({{name, "h", "gauge", {}}}), "") << name;
  }
  for (const char* label : {"", "9", "a:b", "a-b", "__name__"}) {
    EXPECT_NE(format_error({{"m", "h", "gauge", {{{{label, "v"}}, 1}}}}), "") << label;
  }
  EXPECT_NE(format_error({{"m", "h", "gauge", {{{{"a", "1"}, {"a", "2"}}, 1}}}}), "");
  EXPECT_NE(format_error({{"m", "h", "gauge", {}}, {"m", "h", "gauge", {}}}), "");
  EXPECT_NE(format_error({{"m", "h", "histogram", {}}}).find("histogram"), std::string::npos);
  EXPECT_EQ(format_error({{"_a:B9", "h", "gauge", {{{{"_x9", "v"}}, 1}}}}), "");
}

TEST(Prometheus, TextfileWriteIsAtomic) {
  TempDir dir;
  fs::path path = dir / "peng.prom";
  write_prometheus_textfile(path, {{"old", "h", "gauge", {{{}, 1}}}});
  write_prometheus_textfile(path, sample_metrics());
  EXPECT_EQ(read_file(path), kExpected);
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    names.push_back(entry.path().filename());
  }
  EXPECT_EQ(names, std::vector<std::string>{"peng.prom"});  // no peng.prom.tmp left
  EXPECT_THROW(write_prometheus_textfile(dir / "missing" / "x.prom", sample_metrics()), IoError);
}

TEST(Prometheus, PromtoolAccepts) {
  if (std::system("command -v promtool > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "promtool not installed";
  }
  TempDir dir;
  fs::path path = dir / "peng.prom";
  write_prometheus_textfile(path, sample_metrics());
  std::string cmd = "promtool check metrics < '" + path.string() + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

}  // namespace
}  // namespace peng
