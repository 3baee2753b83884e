// TensorBoard event files: a writer for scalar series (the trainer's sink) and a reader
// that verifies every record (tests, tools).
//
// An event file is a TFRecord file, a sequence of records, each laid out as
//   uint64 length                          little-endian, the byte count of `data`
//   uint32 masked_crc32c(the 8 length bytes)  little-endian
//   byte   data[length]                    one serialized proto::tensorboard::Event
//   uint32 masked_crc32c(data)             little-endian
// (masked_crc32c: telemetry/tensorboard/crc32c.h). The first Event carries file_version
// "brain.Event:2"; every later one a Summary of scalar `simple_value`s. simple_value is a
// float: values are rounded to float precision; NaN and infinities are written as they are.
//
// TensorBoard only loads files whose name contains "tfevents": the writer names its file
// events.out.tfevents.<unix seconds>.<hostname>.<pid>, with ".1", ".2", ... appended when
// that name is already taken (two writers in one folder within one second).
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "peng/tensorboard.pb.h"

namespace peng::tensorboard {

// Seconds since the Unix epoch, the default wall_time of every Event.
double wall_time_now();

// Appends Events to a new event file; records are buffered until flush(). The file is
// closed on destruction, where a failure is lost: call flush() after the last write.
class EventFileWriter {
 public:
  // Creates `folder` (with its parents) and a new event file in it, and writes the
  // file_version Event. Throws IoError naming the path and the OS error.
  explicit EventFileWriter(const std::filesystem::path& folder);
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;

  // One Event holding one scalar.
  void add_scalar(const std::string& tag, int64_t step, double value,
                  double wall_time = wall_time_now());
  // One Event holding several scalars of the same step, in the given order.
  void add_scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values,
                   double wall_time = wall_time_now());
  // Hands buffered records to the OS, so that TensorBoard sees them (once per logging step).
  void flush();

  const std::filesystem::path& path() const { return path_; }

 private:
  void write_event(const proto::tensorboard::Event& event);

  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, Closer> file_;
  std::filesystem::path path_;
};

// Every Event of an event file, in order. Throws InputError naming the file and the byte
// offset of the record on a bad length CRC, a bad data CRC, a truncated record or an
// unparsable Event; IoError when the file cannot be read.
std::vector<proto::tensorboard::Event> read_event_file(const std::filesystem::path& path);

// The scalar series of an event file: tag -> (step, value) in file order.
std::map<std::string, std::vector<std::pair<int64_t, double>>> read_scalars(
    const std::filesystem::path& path);

}  // namespace peng::tensorboard
