// Fault tests of multi-rank training under mpirun on the CPU backend (the checks:
// tests/util/fault_checks.h; their GPU forms are in tests/gpu/multi_gpu_train_test.cc).
#include <gtest/gtest.h>

#include "tests/util/fault_checks.h"

namespace peng {
namespace {

TEST(Fault, KilledRankEndsEveryRankWithItsName) { testing::expect_killed_rank_ends_the_job(); }

TEST(Fault, HungRankTimesOutWithAnErrorNamingIt) { testing::expect_hung_rank_named(); }

}  // namespace
}  // namespace peng
