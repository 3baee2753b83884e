// Pipeline schedules: the compute order of each schedule (Megatron's formulas), transfers
// placed around it, a repair pass that orders transfers for synchronous sends, and the
// checker (static checks, then a time-stepped simulation).
#include "peng/parallel/pipeline/schedule.h"

#include <algorithm>
#include <set>
#include <sstream>
#include <tuple>

#include "peng/core/error.h"

namespace peng {
namespace {

bool is_compute(const Action& a) { return !is_transfer(a); }

// Identity of one message: (is_grad, micro, boundary, src, dst).
using MessageKey = std::tuple<int, int, int, int, int>;

MessageKey message_key(const Action& a, int rank, int pp) {
  const bool grad = a.op == Action::kSendGrad || a.op == Action::kRecvGrad;
  const int src = is_send(a) ? rank : a.peer;
  const int dst = is_send(a) ? a.peer : rank;
  return {grad ? 1 : 0, a.micro, transfer_boundary(a, rank, pp), src, dst};
}

// The action on the other end of transfer `a` of `rank`.
Action partner_of(const Action& a, int rank, int pp) {
  const int s = stage_of(a.chunk, rank, pp);
  switch (a.op) {
    case Action::kSendActivation:
      return {Action::kRecvActivation, a.micro, chunk_of_stage(s + 1, pp), rank};
    case Action::kRecvActivation:
      return {Action::kSendActivation, a.micro, chunk_of_stage(s - 1, pp), rank};
    case Action::kSendGrad:
      return {Action::kRecvGrad, a.micro, chunk_of_stage(s - 1, pp), rank};
    case Action::kRecvGrad:
      return {Action::kSendGrad, a.micro, chunk_of_stage(s + 1, pp), rank};
    default:
      PENG_CHECK(false, "partner_of: ", describe_action(a), " is not a transfer");
  }
  return a;
}

// The per-rank compute order of each schedule.
std::vector<Action> compute_order(ScheduleKind kind, int pp, int v, int m, int r) {
  std::vector<Action> out;
  auto fwd = [&](int micro, int chunk) { out.push_back({Action::kForward, micro, chunk, -1}); };
  auto bwd = [&](int micro, int chunk) { out.push_back({Action::kBackward, micro, chunk, -1}); };
  switch (kind) {
    case ScheduleKind::kGPipe:
      for (int i = 0; i < m; ++i) fwd(i, 0);
      for (int i = 0; i < m; ++i) bwd(i, 0);
      break;
    case ScheduleKind::k1F1B: {
      const int warmup = std::min(pp - r - 1, m);
      for (int i = 0; i < warmup; ++i) fwd(i, 0);
      for (int i = 0; i < m - warmup; ++i) {
        fwd(warmup + i, 0);
        bwd(i, 0);
      }
      for (int i = m - warmup; i < m; ++i) bwd(i, 0);
      break;
    }
    case ScheduleKind::kInterleaved1F1B: {
      // Megatron: get_model_chunk_id / get_microbatch_id_in_model_chunk.
      const int total = m * v, group = pp * v;
      auto micro_of = [&](int k) { return (k / group) * pp + k % pp; };
      auto fchunk = [&](int k) { return (k % group) / pp; };
      auto bchunk = [&](int k) { return v - 1 - (k % group) / pp; };
      const int warmup = m == pp ? total : std::min((pp - r - 1) * 2 + (v - 1) * pp, total);
      for (int k = 0; k < warmup; ++k) fwd(micro_of(k), fchunk(k));
      for (int k = 0; k < total - warmup; ++k) {
        fwd(micro_of(k + warmup), fchunk(k + warmup));
        bwd(micro_of(k), bchunk(k));
      }
      for (int k = total - warmup; k < total; ++k) bwd(micro_of(k), bchunk(k));
      break;
    }
  }
  return out;
}

// The shape checks shared by make_schedule and validate_pipeline.
void check_shape(ScheduleKind kind, int pp, int v, int m) {
  PENG_INPUT_CHECK(pp >= 1, "parallel.pp must be >= 1, got ", pp);
  PENG_INPUT_CHECK(v >= 1, "parallel.virtual_stages must be >= 1, got ", v);
  PENG_INPUT_CHECK(m >= 1, "the pipeline needs at least 1 micro-batch, got ", m);
  PENG_INPUT_CHECK(v == 1 || kind == ScheduleKind::kInterleaved1F1B, "parallel.virtual_stages (", v,
                   ") > 1 needs parallel.pp_schedule interleaved, got ", schedule_kind_name(kind));
}

void check_micro_batches(ScheduleKind kind, int pp, int m) {
  PENG_INPUT_CHECK(kind == ScheduleKind::kGPipe || m >= pp, "parallel.pp_schedule ",
                   schedule_kind_name(kind), " needs at least pp (", pp, ") micro-batches, got ", m,
                   " (micro-batches per step = training.batch_size / parallel.dp / "
                   "training.micro_batch_size)");
  PENG_INPUT_CHECK(kind != ScheduleKind::kInterleaved1F1B || m % pp == 0,
                   "parallel.pp_schedule interleaved needs the number of micro-batches (", m,
                   ") to be a multiple of pp (", pp, ")");
}

// Reorders transfers so that the lists run with synchronous sends. Runs the lists with
// rendezvous semantics; whenever every unfinished rank waits:
// 1. a rank blocked at a send X whose recv sits further down its receiver's current block
//    (the transfers before the receiver's next compute) gets that recv moved to the front of
//    the block: the receiver takes the message already sent first;
// 2. else the same for a rank blocked at a recv;
// 3. else the blocked send whose receiver needs it last is deferred past its rank's next
//    compute (the receiver is busy elsewhere; with 1F1B and GPipe this never happens, with
//    interleaving it does, as Megatron's exchanges that pair each send with a recv).
// Sends stay after their producer and recvs right before their consumer.
void order_for_rendezvous(Schedule& lists, int pp) {
  std::vector<size_t> pc(pp, 0);
  auto done = [&](int r) { return pc[r] == lists[r].size(); };
  for (;;) {
    for (bool progress = true; progress;) {
      progress = false;
      for (int r = 0; r < pp; ++r) {
        while (!done(r)) {
          const Action& a = lists[r][pc[r]];
          if (is_compute(a)) {
            ++pc[r];
          } else if (!done(a.peer) && lists[a.peer][pc[a.peer]] == partner_of(a, r, pp)) {
            ++pc[r];
            ++pc[a.peer];
          } else {
            break;
          }
          progress = true;
        }
      }
    }
    bool all_done = true;
    for (int r = 0; r < pp; ++r) all_done = all_done && done(r);
    if (all_done) return;
    bool fixed = false;
    for (int pass = 0; pass < 2 && !fixed; ++pass) {
      for (int r = 0; r < pp && !fixed; ++r) {
        if (done(r) || is_send(lists[r][pc[r]]) != (pass == 0)) continue;
        const Action& a = lists[r][pc[r]];
        const Action want = partner_of(a, r, pp);
        std::vector<Action>& other = lists[a.peer];
        for (size_t j = pc[a.peer]; j < other.size() && is_transfer(other[j]); ++j) {
          if (other[j] == want) {
            std::rotate(other.begin() + pc[a.peer], other.begin() + j, other.begin() + j + 1);
            fixed = true;
            break;
          }
        }
      }
    }
    if (!fixed) {
      // Defer a blocked send past its rank's next compute: the one whose receiver needs it
      // last (most computes before its recv).
      int best = -1;
      size_t best_distance = 0;
      for (int r = 0; r < pp; ++r) {
        if (done(r) || !is_send(lists[r][pc[r]])) continue;
        const Action& a = lists[r][pc[r]];
        const std::vector<Action>& other = lists[a.peer];
        const auto it = std::find(other.begin() + pc[a.peer], other.end(), partner_of(a, r, pp));
        const size_t distance = size_t(std::count_if(other.begin() + pc[a.peer], it, is_compute));
        const bool can_defer = std::any_of(lists[r].begin() + pc[r], lists[r].end(), is_compute);
        if (can_defer && (best < 0 || distance > best_distance)) {
          best = r;
          best_distance = distance;
        }
      }
      PENG_CHECK(best >= 0, "make_schedule: internal error, the transfers deadlock:\n",
                 format_schedule(lists));
      std::vector<Action>& list = lists[best];
      const auto head = list.begin() + pc[best];
      const auto compute = std::find_if(head, list.end(), is_compute);
      std::rotate(head, head + 1, compute + 1);
    }
  }
}

std::string ordinal(int64_t n) {
  const char* suffix = "th";
  if (n % 100 < 11 || n % 100 > 13) {
    if (n % 10 == 1) suffix = "st";
    if (n % 10 == 2) suffix = "nd";
    if (n % 10 == 3) suffix = "rd";
  }
  return std::to_string(n) + suffix;
}

std::string at(int rank, size_t index, const Action& a) {
  return detail::concat("rank ", rank, " action ", index, " (", describe_action(a), ")");
}

// The simulated time of compute `a` on rank r: its op's cost times its stage's weight.
int64_t compute_cost(const Action& a, int r, int pp, const CheckOptions& options) {
  const int64_t base = a.op == Action::kForward ? options.forward_cost : options.backward_cost;
  if (options.stage_cost.empty()) return base;
  const size_t stage = size_t(a.chunk) * size_t(pp) + size_t(r);
  return base * (stage < options.stage_cost.size() ? options.stage_cost[stage] : 1);
}

// Runs the lists in simulated time (computes take their cost, transfers none) with the
// given send semantics. Returns "" and sets `steps` (the time the last rank finishes) and
// `busy` (per rank), or describes the deadlock.
std::string simulate(const Schedule& schedule, int pp, const CheckOptions& options, int64_t& steps,
                     std::vector<int64_t>& busy) {
  const SendMode mode = options.send_mode;
  const bool streams = mode == SendMode::kStreams;
  // pc: the next action (kStreams: the next compute); comm: kStreams' next transfer.
  std::vector<size_t> pc(pp, 0), comm(pp, 0);
  std::vector<int64_t> busy_until(pp, 0);
  busy.assign(pp, 0);
  std::multiset<MessageKey> in_flight;  // kBuffered: sent, not yet received
  auto next_of = [&](int r, size_t i, bool transfer) {
    while (i < schedule[r].size() && is_transfer(schedule[r][i]) != transfer) ++i;
    return i;
  };
  if (streams) {
    for (int r = 0; r < pp; ++r) {
      pc[r] = next_of(r, 0, false);
      comm[r] = next_of(r, 0, true);
    }
  }
  auto at_end = [&](int r) {
    return pc[r] == schedule[r].size() && (!streams || comm[r] == schedule[r].size());
  };
  // kStreams: every compute listed before action i has finished / every recv has completed.
  std::vector<int64_t> last_started(pp, -1);  // kStreams: the compute started last
  auto computed_before = [&](int r, size_t i, int64_t t) {
    return pc[r] >= i && (last_started[r] > int64_t(i) || busy_until[r] <= t);
  };
  auto received_before = [&](int r, size_t i) {
    for (size_t j = comm[r]; j < i; ++j)
      if (is_transfer(schedule[r][j]) && !is_send(schedule[r][j])) return false;
    return true;
  };
  int64_t t = 0;
  for (;;) {
    for (bool progress = true; progress;) {
      progress = false;
      for (int r = 0; r < pp; ++r) {
        if (streams) {
          // The compute stream.
          if (busy_until[r] <= t && pc[r] < schedule[r].size() && received_before(r, pc[r])) {
            const Action& a = schedule[r][pc[r]];
            const int64_t cost = compute_cost(a, r, pp, options);
            busy_until[r] = t + cost;
            busy[r] += cost;
            last_started[r] = int64_t(pc[r]);
            pc[r] = next_of(r, pc[r] + 1, false);
            progress = true;
          }
          // The comm stream: the head transfer meets its peer's when both are ready.
          const size_t j = comm[r];
          if (j == schedule[r].size()) continue;
          const Action& a = schedule[r][j];
          const int p = a.peer;
          const size_t k = comm[p];
          if (k < schedule[p].size() && schedule[p][k] == partner_of(a, r, pp) &&
              computed_before(r, j, t) && computed_before(p, k, t)) {
            comm[r] = next_of(r, j + 1, true);
            comm[p] = next_of(p, k + 1, true);
            progress = true;
          }
          continue;
        }
        while (!at_end(r) && busy_until[r] <= t) {
          const Action& a = schedule[r][pc[r]];
          if (is_compute(a)) {
            const int64_t cost = compute_cost(a, r, pp, options);
            busy_until[r] = t + cost;
            busy[r] += cost;
            ++pc[r];
          } else if (mode == SendMode::kBuffered) {
            const MessageKey key = message_key(a, r, pp);
            if (is_send(a)) {
              in_flight.insert(key);
            } else {
              auto it = in_flight.find(key);
              if (it == in_flight.end()) break;
              in_flight.erase(it);
            }
            ++pc[r];
          } else {
            const int p = a.peer;
            if (at_end(p) || busy_until[p] > t || schedule[p][pc[p]] != partner_of(a, r, pp)) {
              break;
            }
            ++pc[r];
            ++pc[p];
          }
          progress = true;
        }
      }
    }
    int64_t next = -1;
    bool all_done = true;
    for (int r = 0; r < pp; ++r) {
      all_done = all_done && at_end(r);
      if (busy_until[r] > t && (next < 0 || busy_until[r] < next)) next = busy_until[r];
    }
    if (next < 0) {
      if (all_done) break;
      std::string who;
      for (int r = 0; r < pp; ++r) {
        if (at_end(r)) continue;
        const size_t i = streams ? std::min(pc[r], comm[r]) : pc[r];
        who += detail::concat(who.empty() ? "" : "; ", at(r, i, schedule[r][i]));
      }
      static const char* const kModes[] = {"rendezvous sends", "buffered sends",
                                           "stream-ordered transfers"};
      return detail::concat("deadlock at time ", t, " with ", kModes[int(mode)], ": waiting at ",
                            who);
    }
    t = next;
  }
  steps = t;
  return "";
}

}  // namespace

const char* schedule_kind_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::kGPipe:
      return "gpipe";
    case ScheduleKind::k1F1B:
      return "1f1b";
    case ScheduleKind::kInterleaved1F1B:
      return "interleaved";
  }
  return "?";
}

int transfer_boundary(const Action& a, int rank, int pp) {
  const int s = stage_of(a.chunk, rank, pp);
  switch (a.op) {
    case Action::kSendActivation:
    case Action::kRecvGrad:
      return s;
    case Action::kRecvActivation:
    case Action::kSendGrad:
      return s - 1;
    default:
      PENG_CHECK(false, "transfer_boundary: ", describe_action(a), " is not a transfer");
  }
  return -1;
}

int p2p_tag(const Action& a, int rank, int pp, int virtual_stages) {
  const bool grad = a.op == Action::kSendGrad || a.op == Action::kRecvGrad;
  const int64_t stages = int64_t(pp) * virtual_stages;
  const int64_t id = (int64_t(a.micro) * stages + transfer_boundary(a, rank, pp)) * 2 + grad;
  return int(id % 32000);
}

Schedule make_schedule(ScheduleKind kind, int pp, int v, int m) {
  check_shape(kind, pp, v, m);
  check_micro_batches(kind, pp, m);
  Schedule computes(pp);
  for (int r = 0; r < pp; ++r) computes[r] = compute_order(kind, pp, v, m, r);
  return with_transfers(computes, pp, v);
}

Schedule with_transfers(const Schedule& computes, int pp, int v) {
  PENG_INPUT_CHECK(int(computes.size()) == pp, "a schedule needs one list per pipeline rank (", pp,
                   "), got ", computes.size());
  const int last_stage = pp * v - 1;
  Schedule lists(pp);
  for (int r = 0; r < pp; ++r) {
    // Each compute: the recv it needs just before it, the send of what it made just after.
    std::vector<Action>& out = lists[r];
    for (const Action& c : computes[r]) {
      PENG_INPUT_CHECK(!is_transfer(c), "with_transfers: rank ", r, "'s list holds a transfer (",
                       describe_action(c), "): give forwards and backwards only");
      const int s = stage_of(c.chunk, r, pp);
      const bool fwd = c.op == Action::kForward;
      if (pp > 1 && (fwd ? s > 0 : s < last_stage)) {
        out.push_back({fwd ? Action::kRecvActivation : Action::kRecvGrad, c.micro, c.chunk,
                       fwd ? (r + pp - 1) % pp : (r + 1) % pp});
      }
      out.push_back(c);
      if (pp > 1 && (fwd ? s < last_stage : s > 0)) {
        out.push_back({fwd ? Action::kSendActivation : Action::kSendGrad, c.micro, c.chunk,
                       fwd ? (r + 1) % pp : (r + pp - 1) % pp});
      }
    }
    // Blocks start with their sends (issued as early as possible).
    for (size_t i = 0; i < out.size();) {
      size_t j = i;
      while (j < out.size() && is_transfer(out[j])) ++j;
      std::stable_partition(out.begin() + i, out.begin() + j, is_send);
      i = j + 1;
    }
  }
  order_for_rendezvous(lists, pp);
  return lists;
}

void validate_pipeline(ScheduleKind kind, int n_layer, int pp, int v, int micro_batches) {
  check_shape(kind, pp, v, micro_batches);
  PENG_INPUT_CHECK(n_layer >= pp * v, "model.n_layer (", n_layer, ") is less than pp x virtual ",
                   "stages (", pp, " x ", v, "): every pipeline stage needs a layer");
  check_micro_batches(kind, pp, micro_batches);
}

std::string describe_action(const Action& a) {
  static const char* const kNames[] = {"forward",         "backward",  "send activation",
                                       "recv activation", "send grad", "recv grad"};
  const bool known = a.op >= Action::kForward && a.op <= Action::kRecvGrad;
  std::string s = detail::concat(known ? kNames[a.op] : "unknown op", known ? "" : " ",
                                 known ? "" : std::to_string(int(a.op)), " micro ", a.micro,
                                 " chunk ", a.chunk);
  if (is_transfer(a)) s += detail::concat(is_send(a) ? " to rank " : " from rank ", a.peer);
  return s;
}

std::string format_schedule(const Schedule& schedule, bool show_transfers) {
  static const char* const kTokens[] = {"F", "B", "sA", "rA", "sG", "rG"};
  bool chunks = false;
  for (const auto& list : schedule)
    for (const Action& a : list) chunks = chunks || a.chunk != 0;
  std::ostringstream os;
  for (size_t r = 0; r < schedule.size(); ++r) {
    os << "rank " << r << ":";
    for (const Action& a : schedule[r]) {
      if (!show_transfers && is_transfer(a)) continue;
      const bool known = a.op >= Action::kForward && a.op <= Action::kRecvGrad;
      os << ' ' << (known ? kTokens[a.op] : "?") << a.micro;
      if (chunks) os << '.' << a.chunk;
    }
    os << '\n';
  }
  return os.str();
}

double ScheduleCheck::idle_fraction() const {
  return ok && steps > 0 ? double(idle_slots) / double(idle_slots + busy_slots) : 0.0;
}

ScheduleCheck check_schedule(const Schedule& schedule, int pp, int v, int m,
                             const CheckOptions& options) {
  ScheduleCheck result;
  auto fail = [&](const std::string& msg) {
    result.ok = false;
    result.error = msg;
    return result;
  };
  if (pp < 1 || v < 1 || m < 1) {
    return fail(detail::concat("bad shape pp ", pp, " v ", v, " m ", m));
  }
  if (int(schedule.size()) != pp) {
    return fail(detail::concat("the schedule has ", schedule.size(), " rank lists, pp is ", pp));
  }
  const int last_stage = pp * v - 1;

  // 1. Shape, and 2. completeness: pos[r][op][micro * v + chunk] = index in rank r's list.
  std::vector<std::vector<std::vector<int64_t>>> pos(
      pp, std::vector<std::vector<int64_t>>(6, std::vector<int64_t>(size_t(m) * v, -1)));
  for (int r = 0; r < pp; ++r) {
    for (size_t i = 0; i < schedule[r].size(); ++i) {
      const Action& a = schedule[r][i];
      if (a.op < Action::kForward || a.op > Action::kRecvGrad || a.micro < 0 || a.micro >= m ||
          a.chunk < 0 || a.chunk >= v) {
        return fail(detail::concat(at(r, i, a), ": op, micro-batch or chunk out of range (m ", m,
                                   ", v ", v, ")"));
      }
      const int s = stage_of(a.chunk, r, pp);
      int expect_peer = -1;
      switch (a.op) {
        case Action::kSendActivation:
        case Action::kRecvGrad:
          if (s < last_stage) expect_peer = rank_of_stage(s + 1, pp);
          break;
        case Action::kRecvActivation:
        case Action::kSendGrad:
          if (s > 0) expect_peer = rank_of_stage(s - 1, pp);
          break;
        default:
          break;
      }
      if (is_transfer(a) && (expect_peer < 0 || expect_peer == r)) {
        return fail(detail::concat(
            at(r, i, a), ": stage ", s,
            expect_peer < 0 ? " has no neighbour that way" : "'s neighbour is on this rank",
            ", so nothing is transferred"));
      }
      if (a.peer != expect_peer) {
        return fail(detail::concat(at(r, i, a), ": the peer should be ", expect_peer));
      }
      int64_t& p = pos[r][a.op][size_t(a.micro) * v + a.chunk];
      if (p >= 0) {
        return fail(detail::concat(at(r, i, a), ": a second time (first at action ", p, ")"));
      }
      p = int64_t(i);
    }
  }
  for (int r = 0; r < pp; ++r) {
    for (int micro = 0; micro < m; ++micro) {
      for (int c = 0; c < v; ++c) {
        const int s = stage_of(c, r, pp);
        const bool prev = pp > 1 && s > 0, next = pp > 1 && s < last_stage;
        const std::pair<Action::Op, bool> needed[] = {
            {Action::kForward, true},        {Action::kBackward, true},
            {Action::kRecvActivation, prev}, {Action::kSendActivation, next},
            {Action::kRecvGrad, next},       {Action::kSendGrad, prev}};
        for (const auto& [op, need] : needed) {
          if (need && pos[r][op][size_t(micro) * v + c] < 0) {
            Action a{op, micro, c, -1};
            if (op == Action::kRecvActivation || op == Action::kSendGrad) {
              a.peer = rank_of_stage(s - 1, pp);
            } else if (op == Action::kSendActivation || op == Action::kRecvGrad) {
              a.peer = rank_of_stage(s + 1, pp);
            }
            return fail(detail::concat("rank ", r, " has no ", describe_action(a)));
          }
        }
      }
    }
  }

  // 3. Order on each rank.
  for (int r = 0; r < pp; ++r) {
    // "" when `first` precedes `second` on rank r, else the error, naming `second`.
    auto before = [&](Action::Op first, int mf, int cf, Action::Op second, int ms,
                      int cs) -> std::string {
      const int64_t i = pos[r][first][size_t(mf) * v + cf];
      const int64_t j = pos[r][second][size_t(ms) * v + cs];
      if (i < 0 || j < 0 || i < j) return "";
      return detail::concat(at(r, size_t(j), schedule[r][size_t(j)]), " comes before ",
                            describe_action(schedule[r][size_t(i)]), " (action ", i,
                            "), which it must follow");
    };
    for (int micro = 0; micro < m; ++micro) {
      for (int c = 0; c < v; ++c) {
        std::string e = before(Action::kForward, micro, c, Action::kBackward, micro, c);
        if (e.empty()) e = before(Action::kRecvActivation, micro, c, Action::kForward, micro, c);
        if (e.empty()) e = before(Action::kForward, micro, c, Action::kSendActivation, micro, c);
        if (e.empty()) e = before(Action::kRecvGrad, micro, c, Action::kBackward, micro, c);
        if (e.empty()) e = before(Action::kBackward, micro, c, Action::kSendGrad, micro, c);
        if (e.empty() && pp == 1 && c > 0) {
          e = before(Action::kForward, micro, c - 1, Action::kForward, micro, c);
          if (e.empty()) e = before(Action::kBackward, micro, c, Action::kBackward, micro, c - 1);
        }
        if (!e.empty()) return fail(e);
      }
    }
  }

  // 4. Simulation.
  std::vector<int64_t> busy;
  const std::string deadlock = simulate(schedule, pp, options, result.steps, busy);
  if (!deadlock.empty()) return fail(deadlock);
  for (int r = 0; r < pp; ++r) {
    result.busy_slots += busy[r];
    result.idle_slots += result.steps - busy[r];
  }

  // 5. Transfer order per pair of ranks.
  for (int src = 0; src < pp; ++src) {
    for (int dst = 0; dst < pp; ++dst) {
      std::vector<std::pair<size_t, MessageKey>> sends, recvs;
      for (size_t i = 0; i < schedule[src].size(); ++i) {
        const Action& a = schedule[src][i];
        if (is_send(a) && a.peer == dst) sends.push_back({i, message_key(a, src, pp)});
      }
      for (size_t i = 0; i < schedule[dst].size(); ++i) {
        const Action& a = schedule[dst][i];
        if (is_transfer(a) && !is_send(a) && a.peer == src) {
          recvs.push_back({i, message_key(a, dst, pp)});
        }
      }
      for (size_t k = 0; k < std::min(sends.size(), recvs.size()); ++k) {
        if (sends[k].second == recvs[k].second) continue;
        const size_t i = recvs[k].first, j = sends[k].first;
        return fail(detail::concat(at(dst, i, schedule[dst][i]), " is the ", ordinal(k + 1),
                                   " recv from rank ", src, ", but rank ", src, "'s ",
                                   ordinal(k + 1), " send to rank ", dst, " is action ", j, " (",
                                   describe_action(schedule[src][j]),
                                   "): sends and recvs between two ranks must come in the same "
                                   "order (NCCL matches them by order)"));
      }
    }
  }
  result.ok = true;
  return result;
}

}  // namespace peng
