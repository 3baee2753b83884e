// peng::Error and the PENG_CHECK macros.
//
// Contract: library code never prints or exits on bad input; it throws a peng::Error
// (or a subclass) whose message names the file, field, tensor or rank at fault.
// Only main() turns an Error into one `error: <message>` line on stderr and exit 1.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace peng {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// Bad user input: config fields, CLI flags, files and their contents.
class InputError : public Error {
 public:
  using Error::Error;
};

// An I/O failure of the operating system (open, read, write, fsync).
class IoError : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace peng

// PENG_CHECK(cond, msg...) throws peng::Error with the concatenated message.
#define PENG_CHECK(cond, ...)                                              \
  do {                                                                     \
    if (!(cond)) throw ::peng::Error(::peng::detail::concat(__VA_ARGS__)); \
  } while (0)

// PENG_INPUT_CHECK(cond, msg...) throws peng::InputError: for user-facing input checks.
#define PENG_INPUT_CHECK(cond, ...)                                             \
  do {                                                                          \
    if (!(cond)) throw ::peng::InputError(::peng::detail::concat(__VA_ARGS__)); \
  } while (0)
