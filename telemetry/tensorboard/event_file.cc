#include "peng/telemetry/tensorboard/event_file.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

#include "peng/core/error.h"
#include "peng/telemetry/tensorboard/crc32c.h"

namespace peng::tensorboard {
namespace {

constexpr size_t kHeaderBytes = 12;  // uint64 length + uint32 masked CRC of the length
constexpr size_t kFooterBytes = 4;   // uint32 masked CRC of the data

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

uint64_t get_le(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i)
    v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

std::string hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

}  // namespace

double wall_time_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

EventFileWriter::EventFileWriter(const std::filesystem::path& folder) {
  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  if (ec)
    throw IoError("cannot create TensorBoard folder " + folder.string() + ": " + ec.message());
  const double now = wall_time_now();
  const std::string base = "events.out.tfevents." + std::to_string(static_cast<int64_t>(now)) +
                           "." + hostname() + "." + std::to_string(getpid());
  // "x": fail rather than clobber a file another writer made in the same second.
  for (int n = 0; !file_; ++n) {
    path_ = folder / (n == 0 ? base : base + "." + std::to_string(n));
    file_.reset(std::fopen(path_.c_str(), "wbx"));
    if (!file_ && errno != EEXIST) {
      throw IoError("cannot create TensorBoard event file " + path_.string() + ": " +
                    std::strerror(errno));
    }
  }
  proto::tensorboard::Event event;
  event.set_wall_time(now);
  event.set_file_version("brain.Event:2");
  write_event(event);
}

void EventFileWriter::add_scalar(const std::string& tag, int64_t step, double value,
                                 double wall_time) {
  add_scalars(step, {{tag, value}}, wall_time);
}

void EventFileWriter::add_scalars(int64_t step,
                                  const std::vector<std::pair<std::string, double>>& values,
                                  double wall_time) {
  proto::tensorboard::Event event;
  event.set_wall_time(wall_time);
  event.set_step(step);
  for (const auto& [tag, value] : values) {
    auto* v = event.mutable_summary()->add_value();
    v->set_tag(tag);
    v->set_simple_value(static_cast<float>(value));
  }
  write_event(event);
}

void EventFileWriter::flush() {
  if (std::fflush(file_.get()) != 0) {
    throw IoError("cannot write TensorBoard event file " + path_.string() + ": " +
                  std::strerror(errno));
  }
}

void EventFileWriter::write_event(const proto::tensorboard::Event& event) {
  const std::string data = event.SerializeAsString();
  std::string record;
  record.reserve(kHeaderBytes + data.size() + kFooterBytes);
  put_le(record, data.size(), 8);
  put_le(record, masked_crc32c(record.data(), 8), 4);
  record += data;
  put_le(record, masked_crc32c(data.data(), data.size()), 4);
  if (std::fwrite(record.data(), 1, record.size(), file_.get()) != record.size()) {
    throw IoError("cannot write TensorBoard event file " + path_.string() + ": " +
                  std::strerror(errno));
  }
}

std::vector<proto::tensorboard::Event> read_event_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw IoError("cannot open TensorBoard event file " + path.string() + ": " +
                  std::strerror(errno));
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) {
    throw IoError("cannot read TensorBoard event file " + path.string() + ": " +
                  std::strerror(errno));
  }
  const std::string bytes = buf.str();
  const auto fail = [&](size_t offset, const std::string& what) {
    return InputError("TensorBoard event file " + path.string() + ": record at byte offset " +
                      std::to_string(offset) + ": " + what);
  };

  std::vector<proto::tensorboard::Event> events;
  for (size_t pos = 0; pos < bytes.size();) {
    const size_t left = bytes.size() - pos;
    if (left < kHeaderBytes) {
      throw fail(pos, "truncated header (" + std::to_string(left) + " of " +
                          std::to_string(kHeaderBytes) + " bytes)");
    }
    const char* p = bytes.data() + pos;
    if (get_le(p + 8, 4) != masked_crc32c(p, 8)) throw fail(pos, "bad length CRC");
    const uint64_t length = get_le(p, 8);
    const size_t body = left - kHeaderBytes;  // data and footer
    if (body < kFooterBytes || length > body - kFooterBytes) {
      throw fail(pos, "truncated record (" + std::to_string(length) + " data bytes + " +
                          std::to_string(kFooterBytes) + " CRC bytes expected, " +
                          std::to_string(body) + " left)");
    }
    const char* data = p + kHeaderBytes;
    if (get_le(data + length, 4) != masked_crc32c(data, length)) throw fail(pos, "bad data CRC");
    if (length > INT_MAX || !events.emplace_back().ParseFromArray(data, static_cast<int>(length))) {
      throw fail(pos, "unparsable Event");
    }
    pos += kHeaderBytes + length + kFooterBytes;
  }
  return events;
}

std::map<std::string, std::vector<std::pair<int64_t, double>>> read_scalars(
    const std::filesystem::path& path) {
  std::map<std::string, std::vector<std::pair<int64_t, double>>> series;
  for (const auto& event : read_event_file(path)) {
    for (const auto& v : event.summary().value()) {
      if (v.value_case() == proto::tensorboard::Summary::Value::kSimpleValue) {
        series[v.tag()].emplace_back(event.step(), v.simple_value());
      }
    }
  }
  return series;
}

}  // namespace peng::tensorboard
