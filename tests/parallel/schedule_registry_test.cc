// The schedule registry (parallel/pipeline/schedule_registry.h): built-in schedules by name,
// a program's own schedule registered and built, and every schedule checked before use: an
// invalid list is refused naming the schedule and the violation.
#include <gtest/gtest.h>

#include "peng/core/error.h"
#include "peng/parallel/pipeline/schedule_registry.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

using testing::input_error_of;

// GPipe's forwards, then the backwards in reverse micro-batch order: valid, and not built in.
Schedule reverse_gpipe(int pp, int v, int m) {
  Schedule computes(pp);
  for (int r = 0; r < pp; ++r) {
    for (int i = 0; i < m; ++i) computes[r].push_back({Action::kForward, i, 0, -1});
    for (int i = m - 1; i >= 0; --i) computes[r].push_back({Action::kBackward, i, 0, -1});
  }
  return with_transfers(computes, pp, v);
}

TEST(ScheduleRegistry, BuiltInsAreRegistered) {
  const std::vector<std::string> names = schedule_names();
  ASSERT_GE(names.size(), 3u);
  EXPECT_EQ(std::vector<std::string>(names.begin(), names.begin() + 3),
            (std::vector<std::string>{"gpipe", "1f1b", "interleaved"}));
  EXPECT_TRUE(schedule_spec("gpipe").forwards_first);
  EXPECT_TRUE(schedule_spec("interleaved").chunked);
  EXPECT_EQ(build_schedule("1f1b", 4, 1, 8), make_schedule(ScheduleKind::k1F1B, 4, 1, 8));
  EXPECT_NE(input_error_of([] { schedule_spec("zb-h1"); }).find("valid: gpipe, 1f1b, interleaved"),
            std::string::npos);
  EXPECT_NE(input_error_of([] {
              build_schedule("1f1b", 2, 2, 4);
            }).find("needs parallel.pp_schedule interleaved"),
            std::string::npos);
}

TEST(ScheduleRegistry, OwnScheduleIsBuiltAndChecked) {
  register_schedule({.name = "test-reverse-gpipe",
                     .description = "GPipe, backwards in reverse",
                     .forwards_first = true,
                     .build = reverse_gpipe});
  const Schedule s = build_schedule("test-reverse-gpipe", 3, 1, 4);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_TRUE(check_schedule(s, 3, 1, 4).ok);
  EXPECT_NE(format_schedule(s, false).find("rank 0: F0 F1 F2 F3 B3 B2 B1 B0"), std::string::npos)
      << format_schedule(s, false);
  EXPECT_NE(input_error_of([] {
              register_schedule({.name = "test-reverse-gpipe", .build = reverse_gpipe});
            }).find("already registered"),
            std::string::npos);
  EXPECT_NE(
      input_error_of([] { register_schedule({.name = "no-build"}); }).find("no build function"),
      std::string::npos);
}

TEST(ScheduleRegistry, ForwardsFirstIsVerified) {
  register_schedule(
      {.name = "test-1f1b-as-gpipe",
       .forwards_first = true,  // wrong: 1F1B interleaves them
       .build = [](int pp, int v, int m) { return make_schedule(ScheduleKind::k1F1B, pp, v, m); }});
  const std::string e = input_error_of([] { build_schedule("test-1f1b-as-gpipe", 2, 1, 4); });
  EXPECT_NE(
      e.find(
          "registered as forwards_first, but rank 0 runs forward micro 2 chunk 0 after a backward"),
      std::string::npos)
      << e;
}

TEST(ScheduleRegistry, InvalidScheduleIsRefusedNamingTheViolation) {
  // Rank 1 runs micro-batch 1's backward before its forward.
  register_schedule(
      {.name = "test-broken", .build = [](int pp, int v, int m) {
         Schedule computes(pp);
         for (int r = 0; r < pp; ++r) {
           for (int i = 0; i < m; ++i) {
             const bool swap = r == 1 && i == 1;
             computes[r].push_back({swap ? Action::kBackward : Action::kForward, i, 0, -1});
             computes[r].push_back({swap ? Action::kForward : Action::kBackward, i, 0, -1});
           }
         }
         return with_transfers(computes, pp, v);
       }});
  const std::string e = input_error_of([] { build_schedule("test-broken", 2, 1, 2); });
  EXPECT_NE(e.find("pipeline schedule 'test-broken'"), std::string::npos) << e;
  EXPECT_NE(e.find("rank 1"), std::string::npos) << e;
  // A transfer in a compute order is refused by with_transfers.
  const std::string t = input_error_of([] {
    with_transfers({{{Action::kSendActivation, 0, 0, 1}}, {}}, 2, 1);
  });
  EXPECT_NE(t.find("holds a transfer"), std::string::npos) << t;
}

}  // namespace
}  // namespace peng
