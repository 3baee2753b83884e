#include "peng/accounting/certificate_html.h"

#include <string_view>
#include <vector>

#include "peng/accounting/report.h"
#include "peng/accounting/report_html.h"

namespace peng::certificate {

namespace {

using nlohmann::json;
using report::format;
using report::html_escape;

constexpr const char* kCss = R"(
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","WenQuanYi Micro Hei",
"Microsoft YaHei",sans-serif;margin:24px;color:#222;background:#fff;max-width:1100px}
h1{font-size:1.5em;margin:0 0 4px}h2{font-size:1.15em;margin:26px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin-bottom:8px}
th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
td{overflow-wrap:anywhere}th{background:#f4f4f4}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.time{white-space:nowrap}table.fields th{width:16em}
code{font-size:12px;word-break:break-all;white-space:normal}
.muted{color:#666;font-size:13px}.en{color:#555}
@media print{body{margin:0}h2{break-after:avoid}table{break-inside:auto}}
)";

// "中文 English" for a label.
std::string label(std::string_view zh, std::string_view en) {
  return std::string(zh) + " " + std::string(en);
}

// A label as markup: the Chinese, then the English in a lighter tone.
std::string label_html(std::string_view zh, std::string_view en) {
  return "<span lang=\"zh-CN\">" + std::string(zh) + "</span> <span class=\"en\">" +
         std::string(en) + "</span>";
}

std::string str(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

std::string number(const json& v, const char* fmt) {
  return v.is_null() ? "n/a" : format(fmt, v.get<double>());
}

std::string percent(const json& v) {
  return v.is_null() ? "n/a" : format("%.1f%%", v.get<double>() * 100);
}

std::string energy(const json& row) {
  return row.at("energy_kwh").is_null() ? label("未计量", "not measured")
                                        : format("%.6g kWh", row.at("energy_kwh").get<double>());
}

// A two-column table of (label markup, escaped value) pairs.
std::string fields(const std::string& id,
                   const std::vector<std::pair<std::string, std::string>>& rows) {
  std::string out = "<table class=\"fields\" id=\"" + id + "\"><tbody>\n";
  for (const auto& [name, value] : rows) {
    out += "<tr><th>" + name + "</th><td>" + html_escape(value) + "</td></tr>\n";
  }
  return out + "</tbody></table>\n";
}

std::string section(const std::string& id, std::string_view zh, std::string_view en,
                    const std::string& body) {
  return "<section id=\"" + id + "\"><h2>" + label_html(zh, en) + "</h2>\n" + body + "</section>\n";
}

std::string peaks(const json& row) {
  std::string out;
  for (const json& p : row.at("peaks")) {
    out += (out.empty() ? "" : "; ") + format("%.4g TFLOP/s", p.at("tflops").get<double>()) + " (" +
           p.at("source").get<std::string>() + ")";
  }
  return out.empty() ? "n/a" : out;
}

std::string contract_section(const json& c) {
  const json& period = c.at("period");
  return "<h1>" + label_html("算力交付证明", "Compute delivery certificate") + "</h1>\n" +
         fields("contract",
                {{label_html("合同编号", "Contract"), str(c.at("contract"))},
                 {label_html("供应方", "Supplier"), str(c.at("supplier"))},
                 {label_html("需求方", "Customer"), str(c.at("customer"))},
                 {label_html("项目", "Project"),
                  c.at("project").is_null() ? label("全部", "all") : str(c.at("project"))},
                 {label_html("服务期间 (UTC)", "Period (UTC)"),
                  str(period.at("from")) + " — " + str(period.at("to")) + " " +
                      label("(不含结束时刻)", "(end excluded)")},
                 {label_html("签发时间", "Issued"), str(c.at("issued"))}});
}

std::string summary_section(const json& c) {
  const json& t = c.at("total");
  return section(
      "summary", "交付汇总", "Summary",
      fields("summary-figures",
             {{label_html("设备时数", "Device-hours"), number(t.at("device_hours"), "%.6g")},
              {label_html("交付算力 (PFLOP/s·小时)", "Capacity delivered (PFLOP/s-hours)"),
               number(t.at("pflops_hours"), "%.6g")},
              {label_html("模型计算量 (FLOP)", "Model FLOPs"), number(t.at("model_flops"), "%.4e")},
              {label_html("平均算力利用率", "Average MFU"), percent(t.at("avg_mfu"))},
              {label_html("有效训练时间占比", "Goodput"), percent(t.at("goodput"))},
              {label_html("训练词元数", "Tokens trained"), str(t.at("tokens"))},
              {label_html("能耗", "Energy"), energy(t)},
              {label_html("作业数", "Jobs"), str(t.at("jobs"))}}) +
          "<p class=\"muted\">" + html_escape(str(c.at("capacity_unit"))) + "</p>\n");
}

std::string devices_section(const json& c) {
  std::vector<std::vector<std::string>> cells;
  for (const json& d : c.at("devices")) {
    cells.push_back({str(d.at("key")), str(d.at("jobs")), number(d.at("device_hours"), "%.6g"),
                     peaks(d), number(d.at("pflops_hours"), "%.6g"), energy(d)});
  }
  return section("devices", "按设备型号", "By device model",
                 report::html_table({label("设备型号", "Device model"), label("作业数", "Jobs"),
                                     label("设备时数", "Device-hours"),
                                     label("额定峰值 (来源)", "Rated peak (source)"),
                                     label("交付算力", "PFLOP/s-hours"), label("能耗", "Energy")},
                                    cells, "lrrlrr"));
}

std::string jobs_section(const json& c) {
  std::vector<std::vector<std::string>> cells;
  for (const json& j : c.at("jobs")) {
    std::string steps;
    for (const json& s : j.at("checkpoint_steps")) {
      if (!steps.empty()) steps += ' ';
      steps += s.dump();
    }
    cells.push_back({str(j.at("job")), str(j.at("user")), str(j.at("project")), str(j.at("device")),
                     str(j.at("devices")), str(j.at("start")),
                     j.at("end").is_null() ? label("运行中", "running") : str(j.at("end")),
                     number(j.at("device_hours"), "%.6g"), str(j.at("tokens")),
                     str(j.at("config_hash")).substr(0, 16), steps.empty() ? "-" : steps,
                     str(j.at("status"))});
  }
  return section("jobs", "作业清单", "Jobs",
                 report::html_table(
                     {label("作业", "Job"), label("用户", "User"), label("项目", "Project"),
                      label("设备", "Device"), label("设备数", "Devices"), label("开始", "Start"),
                      label("结束", "End"), label("设备时数", "Device-hours"),
                      label("词元", "Tokens"), label("配置哈希", "Config hash"),
                      label("检查点步数", "Checkpoint steps"), label("状态", "Status")},
                     cells, "llllrttrrlll"));
}

std::string ledgers_section(const json& c) {
  std::vector<std::vector<std::string>> cells;
  for (const json& l : c.at("ledgers")) {
    cells.push_back({str(l.at("name")), str(l.at("records")), str(l.at("first")), str(l.at("head")),
                     str(l.at("key_id"))});
  }
  return section(
      "ledgers", "用量账本", "Usage ledgers",
      report::html_table({label("文件", "File"), label("记录数", "Records"),
                          label("首条记录哈希", "First record (SHA-256)"),
                          label("末条记录哈希", "Head (SHA-256)"), label("签名密钥", "Key id")},
                         cells, "lrlll"));
}

std::string signature_section(const json& c) {
  return section(
      "signature", "签名", "Signature",
      fields("signature-fields",
             {{label_html("算法", "Algorithm"), "Ed25519"},
              {label_html("密钥标识", "Key id"), c.contains("key_id") ? str(c.at("key_id")) : "-"},
              {label_html("签名", "Signature"), c.contains("sig") ? str(c.at("sig")) : "-"}}) +
          "<p class=\"muted\">" + label_html("验证方法：", "To verify:") +
          " <code>peng certify --verify certificate.json --public-key PUB.pem [LEDGER...]</code> "
          "<span class=\"en\">or, without peng,</span> <code>python3 "
          "scripts/verify_certificate.py certificate.json --public-key PUB.pem [LEDGER...]</code> "
          "(docs/VERIFYING.md). " +
          label_html("签名覆盖 JSON 文件，本页仅供打印。",
                     "The signature covers the JSON file; this page is for printing.") +
          "</p>\n");
}

}  // namespace

std::string to_html(const json& cert) {
  return "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n<title>" +
         html_escape(label("算力交付证明", "Compute delivery certificate") + " " +
                     str(cert.at("contract"))) +
         "</title>\n<style>" + std::string(kCss) + "</style>\n</head>\n<body>\n" +
         contract_section(cert) + summary_section(cert) + devices_section(cert) +
         jobs_section(cert) + ledgers_section(cert) + signature_section(cert) +
         "</body>\n</html>\n";
}

}  // namespace peng::certificate
