// Pipeline schedules (GPipe, 1F1B, interleaved 1F1B) as data: every schedule for several
// (pp, v, m) passes check_schedule with synchronous, buffered and stream-ordered sends;
// known small schedules come out exactly; broken schedules are caught with a useful message; the
// simulated bubble matches (p-1)/(m+p-1) and shrinks with virtual stages.
#include "peng/parallel/pipeline/schedule.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "peng/core/error.h"

namespace peng {
namespace {

Action F(int m, int c = 0) { return {Action::kForward, m, c, -1}; }
Action B(int m, int c = 0) { return {Action::kBackward, m, c, -1}; }
Action sA(int m, int peer, int c = 0) { return {Action::kSendActivation, m, c, peer}; }
Action rA(int m, int peer, int c = 0) { return {Action::kRecvActivation, m, c, peer}; }
Action sG(int m, int peer, int c = 0) { return {Action::kSendGrad, m, c, peer}; }
Action rG(int m, int peer, int c = 0) { return {Action::kRecvGrad, m, c, peer}; }

std::string context(ScheduleKind kind, int pp, int v, int m) {
  return std::string(schedule_kind_name(kind)) + " pp=" + std::to_string(pp) +
         " v=" + std::to_string(v) + " m=" + std::to_string(m);
}

// Checks with every send mode.
void check_all(const Schedule& s, int pp, int v, int m, const std::string& what) {
  for (SendMode mode : {SendMode::kRendezvous, SendMode::kBuffered, SendMode::kStreams}) {
    CheckOptions o;
    o.send_mode = mode;
    const ScheduleCheck c = check_schedule(s, pp, v, m, o);
    EXPECT_TRUE(c.ok) << what << " (send mode " << int(mode) << "): " << c.error << "\n"
                      << format_schedule(s);
  }
}

std::string error_of(const Schedule& s, int pp, int v, int m, SendMode mode) {
  CheckOptions o;
  o.send_mode = mode;
  const ScheduleCheck c = check_schedule(s, pp, v, m, o);
  EXPECT_FALSE(c.ok) << format_schedule(s);
  return c.error;
}

std::string validate_error(ScheduleKind kind, int n_layer, int pp, int v, int m) {
  try {
    validate_pipeline(kind, n_layer, pp, v, m);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(PipelineSchedule, EveryScheduleChecksOut) {
  for (int pp = 1; pp <= 4; ++pp) {
    for (int m : {pp, 2 * pp, 3 * pp + 1, 8}) {
      for (ScheduleKind kind : {ScheduleKind::kGPipe, ScheduleKind::k1F1B}) {
        const Schedule s = make_schedule(kind, pp, 1, m);
        check_all(s, pp, 1, m, context(kind, pp, 1, m));
      }
      if (m % pp != 0) continue;
      for (int v = 1; v <= 3; ++v) {
        const ScheduleKind kind = ScheduleKind::kInterleaved1F1B;
        const Schedule s = make_schedule(kind, pp, v, m);
        check_all(s, pp, v, m, context(kind, pp, v, m));
      }
    }
  }
}

TEST(PipelineSchedule, GPipeSmall) {
  const Schedule s = make_schedule(ScheduleKind::kGPipe, 2, 1, 2);
  EXPECT_EQ(s[0],
            (std::vector<Action>{F(0), sA(0, 1), F(1), sA(1, 1), rG(0, 1), B(0), rG(1, 1), B(1)}));
  EXPECT_EQ(s[1],
            (std::vector<Action>{rA(0, 0), F(0), rA(1, 0), F(1), B(0), sG(0, 0), B(1), sG(1, 0)}));
}

TEST(PipelineSchedule, OneFOneBSmall) {
  const Schedule s = make_schedule(ScheduleKind::k1F1B, 2, 1, 4);
  EXPECT_EQ(format_schedule(s, false),
            "rank 0: F0 F1 B0 F2 B1 F3 B2 B3\n"
            "rank 1: F0 B0 F1 B1 F2 B2 F3 B3\n");
  // In the steady state rank 1 takes the activation rank 0 already sent before it sends
  // its gradient: with synchronous sends the other order would deadlock.
  EXPECT_EQ(format_schedule(s),
            "rank 0: F0 sA0 F1 sA1 rG0 B0 F2 sA2 rG1 B1 F3 sA3 rG2 B2 rG3 B3\n"
            "rank 1: rA0 F0 B0 rA1 sG0 F1 B1 rA2 sG1 F2 B2 rA3 sG2 F3 B3 sG3\n");
  EXPECT_EQ(s[1][3], rA(1, 0));
  EXPECT_EQ(s[1][4], sG(0, 0));

  const Schedule four = make_schedule(ScheduleKind::k1F1B, 4, 1, 6);
  EXPECT_EQ(format_schedule(four, false),
            "rank 0: F0 F1 F2 F3 B0 F4 B1 F5 B2 B3 B4 B5\n"
            "rank 1: F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 B4 B5\n"
            "rank 2: F0 F1 B0 F2 B1 F3 B2 F4 B3 F5 B4 B5\n"
            "rank 3: F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5\n");
}

TEST(PipelineSchedule, InterleavedSmall) {
  // pp 2, v 2, m 4: stages 0..3 = (rank 0 chunk 0, rank 1 chunk 0, rank 0 chunk 1, rank 1
  // chunk 1). Rank 0 warms up with (2-0-1)*2 + (2-1)*2 = 4 forwards, rank 1 with 2.
  const Schedule s = make_schedule(ScheduleKind::kInterleaved1F1B, 2, 2, 4);
  EXPECT_EQ(format_schedule(s, false),
            "rank 0: F0.0 F1.0 F0.1 F1.1 F2.0 B0.1 F3.0 B1.1 F2.1 B0.0 F3.1 B1.0 B2.1 B3.1 B2.0 "
            "B3.0\n"
            "rank 1: F0.0 F1.0 F0.1 B0.1 F1.1 B1.1 F2.0 B0.0 F3.0 B1.0 F2.1 B2.1 F3.1 B3.1 B2.0 "
            "B3.0\n");
  // The activation of stage 1 (rank 1 chunk 0) wraps to stage 2 (rank 0 chunk 1).
  const auto& r1 = s[1];
  EXPECT_NE(std::find(r1.begin(), r1.end(), sA(0, 0, 0)), r1.end());
  EXPECT_NE(std::find(s[0].begin(), s[0].end(), rA(0, 1, 1)), s[0].end());
  // ... and rank 0's chunk 1 sends its gradient back to rank 1's chunk 0.
  EXPECT_NE(std::find(s[0].begin(), s[0].end(), sG(0, 1, 1)), s[0].end());
  EXPECT_EQ(p2p_tag(sA(0, 0, 0), 1, 2, 2), p2p_tag(rA(0, 1, 1), 0, 2, 2));
  EXPECT_NE(p2p_tag(sA(0, 0, 0), 1, 2, 2), p2p_tag(sA(0, 1, 0), 0, 2, 2));
  EXPECT_NE(p2p_tag(sA(0, 0, 0), 1, 2, 2), p2p_tag(sG(0, 0, 1), 0, 2, 2));
}

TEST(PipelineSchedule, SingleStageHasNoTransfers) {
  const Schedule s = make_schedule(ScheduleKind::k1F1B, 1, 1, 3);
  EXPECT_EQ(format_schedule(s), "rank 0: F0 B0 F1 B1 F2 B2\n");
  // pp 1 with chunks: the hand-off between chunks stays on the rank.
  const Schedule v = make_schedule(ScheduleKind::kInterleaved1F1B, 1, 2, 2);
  EXPECT_EQ(format_schedule(v), "rank 0: F0.0 F0.1 B0.1 F1.0 B0.0 F1.1 B1.1 B1.0\n");
}

TEST(PipelineSchedule, EveryPairOfRanksAgreesOnTheOrder) {
  // The property NCCL (no tags) relies on, checked directly on one interleaved schedule.
  const int pp = 3, v = 3, m = 6;
  const Schedule s = make_schedule(ScheduleKind::kInterleaved1F1B, pp, v, m);
  for (int src = 0; src < pp; ++src) {
    for (int dst = 0; dst < pp; ++dst) {
      std::vector<int> sent, received;
      for (const Action& a : s[src])
        if (is_send(a) && a.peer == dst) sent.push_back(p2p_tag(a, src, pp, v));
      for (const Action& a : s[dst])
        if (is_transfer(a) && !is_send(a) && a.peer == src)
          received.push_back(p2p_tag(a, dst, pp, v));
      EXPECT_EQ(sent, received) << src << " -> " << dst;
    }
  }
}

TEST(PipelineSchedule, CatchesBackwardBeforeForward) {
  Schedule s = make_schedule(ScheduleKind::k1F1B, 2, 1, 4);
  ASSERT_EQ(s[1][1], F(0));
  std::swap(s[1][1], s[1][2]);  // rank 1: rA0 B0 F0 ...
  EXPECT_EQ(error_of(s, 2, 1, 4, SendMode::kRendezvous),
            "rank 1 action 1 (backward micro 0 chunk 0) comes before forward micro 0 chunk 0 "
            "(action 2), which it must follow");
}

TEST(PipelineSchedule, CatchesAMissingRecv) {
  Schedule s = make_schedule(ScheduleKind::k1F1B, 2, 1, 4);
  auto& r1 = s[1];
  r1.erase(std::find(r1.begin(), r1.end(), rA(2, 0)));
  EXPECT_EQ(error_of(s, 2, 1, 4, SendMode::kBuffered),
            "rank 1 has no recv activation micro 2 chunk 0 from rank 0");
}

TEST(PipelineSchedule, CatchesRecvsInTheWrongOrder) {
  // Rank 0 sends both activations, then rank 1 takes them the other way round.
  Schedule s = {{F(0), sA(0, 1), F(1), sA(1, 1), rG(0, 1), B(0), rG(1, 1), B(1)},
                {rA(1, 0), rA(0, 0), F(0), F(1), B(0), sG(0, 0), B(1), sG(1, 0)}};
  // With synchronous sends: a deadlock, naming where each rank waits.
  EXPECT_EQ(error_of(s, 2, 1, 2, SendMode::kRendezvous),
            "deadlock at time 1 with rendezvous sends: waiting at rank 0 action 1 (send "
            "activation micro 0 chunk 0 to rank 1); rank 1 action 0 (recv activation micro 1 "
            "chunk 0 from rank 0)");
  // Buffered sends get through with MPI tags, but NCCL would hand over the wrong tensors.
  EXPECT_EQ(error_of(s, 2, 1, 2, SendMode::kBuffered),
            "rank 1 action 0 (recv activation micro 1 chunk 0 from rank 0) is the 1st recv from "
            "rank 0, but rank 0's 1st send to rank 1 is action 1 (send activation micro 0 chunk 0 "
            "to rank 1): sends and recvs between two ranks must come in the same order (NCCL "
            "matches them by order)");
}

TEST(PipelineSchedule, SendBeforeRecvDeadlocksOnlyWithSynchronousSends) {
  Schedule s = make_schedule(ScheduleKind::k1F1B, 2, 1, 4);
  ASSERT_EQ(s[1][3], rA(1, 0));
  std::swap(s[1][3], s[1][4]);  // rank 1: ... B0 sG0 rA1 F1: each rank sends first
  CheckOptions buffered;
  buffered.send_mode = SendMode::kBuffered;
  EXPECT_TRUE(check_schedule(s, 2, 1, 4, buffered).ok);
  const std::string e = error_of(s, 2, 1, 4, SendMode::kRendezvous);
  EXPECT_EQ(e,
            "deadlock at time 4 with rendezvous sends: waiting at rank 0 action 3 (send "
            "activation micro 1 chunk 0 to rank 1); rank 1 action 3 (send grad micro 0 chunk 0 "
            "to rank 0)");
}

TEST(PipelineSchedule, CatchesBadPeersDuplicatesAndRanges) {
  Schedule s = make_schedule(ScheduleKind::kGPipe, 2, 1, 2);
  Schedule bad = s;
  bad[0][1].peer = 0;
  EXPECT_EQ(error_of(bad, 2, 1, 2, SendMode::kBuffered),
            "rank 0 action 1 (send activation micro 0 chunk 0 to rank 0): the peer should be 1");
  bad = s;
  bad[1].push_back(F(1));
  EXPECT_EQ(error_of(bad, 2, 1, 2, SendMode::kBuffered),
            "rank 1 action 8 (forward micro 1 chunk 0): a second time (first at action 3)");
  bad = s;
  bad[0][0].micro = 2;
  EXPECT_EQ(error_of(bad, 2, 1, 2, SendMode::kBuffered),
            "rank 0 action 0 (forward micro 2 chunk 0): op, micro-batch or chunk out of range "
            "(m 2, v 1)");
  bad = s;
  bad[1].insert(bad[1].begin(), sG(0, 2));
  EXPECT_EQ(error_of(bad, 2, 1, 2, SendMode::kBuffered),
            "rank 1 action 0 (send grad micro 0 chunk 0 to rank 2): the peer should be 0");
  bad = s;
  bad[0].insert(bad[0].begin(), rA(0, 1));
  EXPECT_EQ(error_of(bad, 2, 1, 2, SendMode::kBuffered),
            "rank 0 action 0 (recv activation micro 0 chunk 0 from rank 1): stage 0 has no "
            "neighbour that way, so nothing is transferred");
  EXPECT_FALSE(check_schedule(s, 3, 1, 2).ok);  // wrong number of ranks
  // A pp 1 schedule whose chunks run out of order.
  Schedule single = {{F(0, 1), F(0, 0), B(0, 1), B(0, 0)}};
  EXPECT_EQ(error_of(single, 1, 2, 1, SendMode::kBuffered),
            "rank 0 action 0 (forward micro 0 chunk 1) comes before forward micro 0 chunk 0 "
            "(action 1), which it must follow");
}

TEST(PipelineSchedule, ValidateNamesTheNumbers) {
  const auto g = ScheduleKind::kGPipe, f = ScheduleKind::k1F1B, i = ScheduleKind::kInterleaved1F1B;
  EXPECT_NO_THROW(validate_pipeline(f, 12, 4, 1, 4));
  EXPECT_NO_THROW(validate_pipeline(g, 12, 4, 1, 1));
  EXPECT_NO_THROW(validate_pipeline(i, 12, 2, 3, 4));
  EXPECT_EQ(validate_error(f, 12, 0, 1, 4), "parallel.pp must be >= 1, got 0");
  EXPECT_EQ(validate_error(i, 12, 2, 0, 4), "parallel.virtual_stages must be >= 1, got 0");
  EXPECT_EQ(validate_error(g, 12, 2, 1, 0), "the pipeline needs at least 1 micro-batch, got 0");
  EXPECT_EQ(validate_error(f, 12, 2, 2, 4),
            "parallel.virtual_stages (2) > 1 needs parallel.pp_schedule interleaved, got 1f1b");
  EXPECT_EQ(validate_error(f, 4, 5, 1, 5),
            "model.n_layer (4) is less than pp x virtual stages (5 x 1): every pipeline stage "
            "needs a layer");
  EXPECT_EQ(validate_error(i, 6, 4, 2, 8),
            "model.n_layer (6) is less than pp x virtual stages (4 x 2): every pipeline stage "
            "needs a layer");
  EXPECT_NO_THROW(validate_pipeline(f, 12, 5, 1, 5));  // uneven: stage_split.h cuts it
  EXPECT_EQ(validate_error(f, 12, 4, 1, 2),
            "parallel.pp_schedule 1f1b needs at least pp (4) micro-batches, got 2 "
            "(micro-batches per step = training.batch_size / parallel.dp / "
            "training.micro_batch_size)");
  EXPECT_EQ(validate_error(i, 12, 3, 2, 2),
            "parallel.pp_schedule interleaved needs at least pp (3) micro-batches, got 2 "
            "(micro-batches per step = training.batch_size / parallel.dp / "
            "training.micro_batch_size)");
  EXPECT_EQ(validate_error(i, 12, 2, 2, 5),
            "parallel.pp_schedule interleaved needs the number of micro-batches (5) to be a "
            "multiple of pp (2)");
  EXPECT_THROW(make_schedule(f, 4, 1, 3), InputError);
  EXPECT_THROW(make_schedule(g, 2, 2, 3), InputError);
}

TEST(PipelineSchedule, BubbleMatchesTheFormula) {
  // Unit forward, backward 1 or 2 units: GPipe and 1F1B idle (p-1)/(m+p-1) of the rank-time
  // under every send mode.
  for (int64_t backward_cost : {1, 2}) {
    for (int pp = 1; pp <= 4; ++pp) {
      for (int m : {pp, 2 * pp, 3 * pp + 1, 8}) {
        for (ScheduleKind kind : {ScheduleKind::kGPipe, ScheduleKind::k1F1B}) {
          const Schedule s = make_schedule(kind, pp, 1, m);
          for (SendMode mode : {SendMode::kRendezvous, SendMode::kBuffered, SendMode::kStreams}) {
            CheckOptions o;
            o.send_mode = mode;
            o.backward_cost = backward_cost;
            const ScheduleCheck c = check_schedule(s, pp, 1, m, o);
            ASSERT_TRUE(c.ok) << c.error;
            EXPECT_EQ(c.steps, (m + pp - 1) * (1 + backward_cost)) << context(kind, pp, 1, m);
            EXPECT_EQ(c.busy_slots, pp * m * (1 + backward_cost));
            EXPECT_EQ(c.idle_slots * (m + pp - 1), (pp - 1) * (c.idle_slots + c.busy_slots))
                << context(kind, pp, 1, m);
          }
        }
      }
    }
  }
}

TEST(PipelineSchedule, InterleavingShrinksTheBubble) {
  // With sends that do not block (buffered, or NCCL's comm stream) the interleaved
  // schedule idles Megatron's (p-1)/(v*m+p-1) of the rank-time.
  for (SendMode mode : {SendMode::kBuffered, SendMode::kStreams}) {
    CheckOptions o;
    o.send_mode = mode;
    for (int pp : {2, 3, 4}) {
      for (int m : {pp, 2 * pp, 8 - 8 % pp}) {
        for (int v = 1; v <= 3; ++v) {
          const ScheduleCheck c =
              check_schedule(make_schedule(ScheduleKind::kInterleaved1F1B, pp, v, m), pp, v, m, o);
          ASSERT_TRUE(c.ok) << c.error;
          EXPECT_EQ(c.idle_slots * (v * m + pp - 1), (pp - 1) * (c.idle_slots + c.busy_slots))
              << context(ScheduleKind::kInterleaved1F1B, pp, v, m) << " mode " << int(mode);
        }
      }
    }
    const int pp = 4, m = 8;
    const double one =
        check_schedule(make_schedule(ScheduleKind::k1F1B, pp, 1, m), pp, 1, m, o).idle_fraction();
    EXPECT_NEAR(one, 3.0 / 11.0, 1e-12);
    double last = one;
    for (int v = 2; v <= 4; ++v) {
      const ScheduleCheck c =
          check_schedule(make_schedule(ScheduleKind::kInterleaved1F1B, pp, v, m), pp, v, m, o);
      ASSERT_TRUE(c.ok) << c.error;
      EXPECT_NEAR(c.idle_fraction(), 3.0 / (v * m + 3), 1e-12);
      EXPECT_LT(c.idle_fraction(), last) << "v=" << v;
      last = c.idle_fraction();
    }
  }
}

}  // namespace
}  // namespace peng
