// Training configuration: defaults, protobuf text files, `--set path=value` overrides,
// and the command-line flags that are shorthands for config fields.
#pragma once

#include <string>
#include <vector>

#include "peng/config.pb.h"

namespace peng {

// Every field at its default (what an empty CONFIG.pbtxt means).
proto::TrainConfig default_train_config();

// training.device and training.precision with their defaults for empty fields ("cpu",
// "fp32"; a config built without default_train_config leaves them empty).
std::string device_setting(const proto::TrainConfig& config);
std::string precision_setting(const proto::TrainConfig& config);
// parallel.grad_reduce_dtype: "fp32" when empty (a config not built from the defaults).
std::string grad_reduce_setting(const proto::TrainConfig& config);

// Merges a protobuf text file into `config`. Unknown fields, wrong types and syntax
// errors throw InputError naming file:line:column and the field.
void merge_config_file(const std::string& path, proto::TrainConfig& config);

// Sets one field from "path=value", e.g. "optim.lr=3e-4" or "data.train=x.bin".
// Throws InputError naming the path for unknown fields and unparsable values.
void set_config_field(const std::string& assignment, proto::TrainConfig& config);

// A command-line flag that is a shorthand for a config field.
struct ConfigFlag {
  const char* flag;   // "--lr"
  const char* field;  // "optim.lr"
  const char* help;
  bool is_switch;  // a flag without value that sets a bool field to true
};
const std::vector<ConfigFlag>& config_flags();

// A command line's config: the defaults, then `file` (when not empty), then each
// "path=value" of `assignments` in order (set_config_field). What `peng train` builds.
proto::TrainConfig build_train_config(const std::string& file,
                                      const std::vector<std::string>& assignments);

// The config of a `peng train` command line, for programs that build on peng and take the
// same arguments: `[CONFIG.pbtxt] [--flag VALUE | --flag=VALUE | --switch]... [--set
// path=value]...` (`args` without the program name). Applied in `peng train`'s order: the
// defaults, the file, the flags, then each --set. InputError naming an unknown flag, a flag
// without its value, or a second config file.
proto::TrainConfig parse_train_args(const std::vector<std::string>& args);

// Checks the numbers that do not depend on the model or data (batch divisibility,
// positive sizes, known schedule); throws InputError naming the field. (data.train may be
// empty here: a program can give the Trainer its own tokens.)
void validate_train_config(const proto::TrainConfig& config);

// The config as protobuf text (what a run used; written beside metrics).
std::string config_to_text(const proto::TrainConfig& config);

}  // namespace peng
