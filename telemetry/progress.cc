#include "peng/telemetry/progress.h"

#include <unistd.h>

#include <cmath>

namespace peng {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = int64_t(s + 0.5);
  char buf[32];
  if (t >= 3600) {
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", long(t / 3600), long(t / 60 % 60));
  } else if (t >= 60) {
    std::snprintf(buf, sizeof buf, "%ldm%02lds", long(t / 60), long(t % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lds", long(t));
  }
  return buf;
}

ProgressLine::ProgressLine(int64_t total_steps, int every, bool steps, bool messages,
                           std::FILE* out)
    : total_(total_steps),
      every_(every),
      enabled_(steps),
      messages_(messages),
      tty_(isatty(fileno(out))),
      out_(out) {}

void ProgressLine::step(int64_t step, double loss, double tokens_per_s, double elapsed_s) {
  if (!enabled_) return;
  const int64_t done = step + 1;
  const bool last = done == total_;
  if (!tty_ && !last && (every_ <= 0 || done % every_ != 0) && step != 0) return;
  const double eta = elapsed_s / double(done) * double(total_ - done);
  char buf[256];
  std::snprintf(buf, sizeof buf, "step %ld/%ld | loss %.4f | %.0f tok/s | elapsed %s | eta %s",
                long(done), long(total_), loss, tokens_per_s, format_duration(elapsed_s).c_str(),
                format_duration(eta).c_str());
  if (tty_) {
    std::fprintf(out_, "\r\033[K%s", buf);
    dirty_ = true;
  } else {
    std::fprintf(out_, "%s\n", buf);
  }
  std::fflush(out_);
}

void ProgressLine::message(const std::string& text) {
  if (!messages_) return;
  if (dirty_) std::fprintf(out_, "\r\033[K");
  std::fprintf(out_, "%s\n", text.c_str());
  dirty_ = false;
  std::fflush(out_);
}

void ProgressLine::finish() {
  if (dirty_) std::fprintf(out_, "\n");
  dirty_ = false;
  std::fflush(out_);
}

}  // namespace peng
