// Trainer's step callback under mpirun (3 and 4 data-parallel ranks): one rank's stop request
// stops every rank after the same step, and run() returns normally on all of them.
#include <gtest/gtest.h>

#include "peng/launch/config.h"
#include "peng/launch/trainer.h"
#include "peng/parallel/mpi/mpi_communicator.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

TEST(TrainerHooksMpi, OneRanksStopStopsEveryRankAfterTheSameStep) {
  MpiCommunicator& world = mpi_world();
  const testing::ReferenceRun e = testing::load_reference_run("gpt2-tiny");
  proto::TrainConfig c = parse_train_args(e.train_args(6));
  c.mutable_training()->set_batch_size(12);  // splits over 3 and 4 ranks
  c.mutable_logging()->set_quiet(true);
  const int asker = world.size() - 1;  // not rank 0, which writes the metrics
  std::vector<int64_t> seen;
  TrainerHooks hooks{.on_step = [&](const StepRecord& r) {
    seen.push_back(r.step);
    return StepAction{.stop = world.rank() == asker && r.step == 2};
  }};
  const TrainReport report = Trainer(c, hooks).run();
  EXPECT_EQ(report.steps.size(), 3u) << "rank " << world.rank();
  EXPECT_EQ(seen, (std::vector<int64_t>{0, 1, 2})) << "rank " << world.rank();
}

}  // namespace
}  // namespace peng
