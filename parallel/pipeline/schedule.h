// Pipeline schedules as data: per pipeline rank, the ordered list of computations and
// point-to-point transfers of one training step, built before anything runs, printable
// (format_schedule) and checkable for completeness, ordering and deadlock freedom
// (check_schedule). The pipeline runtime executes the lists; it makes no scheduling
// decision of its own.
//
// Layout (Megatron-LM's interleaved layout; v = 1 is the plain layout). The model's
// n_layer blocks are cut into S = pp * v consecutive *stages* of n_layer / S blocks each.
// Pipeline rank r holds v model *chunks*; chunk c on rank r is global stage
//     s = c * pp + r          (rank_of_stage(s) = s % pp, chunk_of_stage(s) = s / pp)
// Stage 0 starts with the embeddings, stage S-1 ends with the head and the loss. Stage s+1's
// input is stage s's output; in backward, stage s's output gradient is stage s+1's input
// gradient. With v > 1 the activation leaving rank pp-1 (chunk c) wraps to rank 0 (chunk
// c+1), and its gradient comes back the same way.
//
// Schedules (m micro-batches, numbered 0..m-1 in data order, per data-parallel rank):
// - kGPipe: every forward, then every backward, both in micro-batch order 0..m-1 (so
//   gradients accumulate over micro-batches in the same order as under 1F1B).
// - k1F1B: PipeDream-flush / Megatron's non-interleaved schedule: rank r runs
//   w = min(pp - r - 1, m) warm-up forwards, then alternates one forward, one backward,
//   then drains the remaining backwards. At most pp - r micro-batches in flight.
// - kInterleaved1F1B: Megatron's forward_backward_pipelining_with_interleaving. The k-th
//   forward of a rank (k = 0..m*v-1) runs chunk (k % (pp*v)) / pp on micro-batch
//   (k / (pp*v)) * pp + k % pp; the k-th backward runs chunk v - 1 - (k % (pp*v)) / pp on
//   the same micro-batch formula. Warm-up is (pp - r - 1) * 2 + (v - 1) * pp forwards,
//   capped at m*v, and all m*v when m == pp; then 1F1B over (micro, chunk) pairs, then the
//   remaining backwards. Needs m % pp == 0 (micro-batches go in groups of pp).
// In every schedule each (micro, chunk) is forwarded once and backwarded once per rank,
// and on each chunk the backwards run in micro-batch order 0..m-1.
//
// Running a schedule (contract for the runtime). Walk rank r's list in order:
// - kForward(micro, chunk): run chunk `chunk`'s forward on micro-batch `micro`, keeping
//   what its backward needs. Input: stage 0 reads the micro-batch's tokens; otherwise the
//   tensor of the kRecvActivation(micro, chunk) earlier in the list, or, when pp == 1 (the
//   previous stage is on this rank), this rank's own output of forward(micro, chunk - 1):
//   transfers within a rank have no actions. The last stage also computes the loss.
// - kBackward(micro, chunk): backward of that forward. Output gradient: the last stage
//   starts from the loss; otherwise the tensor of the kRecvGrad(micro, chunk) earlier in the
//   list, or (pp == 1) this rank's own input gradient of backward(micro, chunk + 1).
//   Parameter gradients accumulate over the micro-batches.
// - kSendActivation(micro, chunk) to `peer`: send forward(micro, chunk)'s output to the
//   next stage. kSendGrad(micro, chunk) to `peer`: send backward(micro, chunk)'s input
//   gradient to the previous stage. Issue sends non-blocking (Communicator::send) and keep
//   the tensor alive until the transfer is done; finish all of them before the step ends.
// - kRecvActivation / kRecvGrad(micro, chunk) from `peer`: receive the input of
//   forward(micro, chunk) / the output gradient of backward(micro, chunk) of this rank; a
//   blocking recv (recv(...)->wait()) is fine.
// - `chunk` is always this rank's chunk (so the two ends of one transfer carry different
//   chunks when it wraps from rank pp-1 to rank 0); `peer` is the pp-group rank at the
//   other end, -1 for kForward/kBackward. The tensors are (micro_batch_size, T, C).
// - Order of transfers. Between two ranks, the sends of one go in the same order as the
//   recvs of the other (check_schedule verifies it): NCCL has no tags and matches send/recv
//   pairs in issue order. For MPI, use p2p_tag(), which both ends compute alike.
// - Placement. A recv sits in the block of transfers (those between two computes) right
//   before the compute that needs it; a send in the block right after the compute that
//   produced it (with interleaving, sometimes a few computes later, where sending at once
//   would deadlock synchronous sends). Within a block the order is chosen so that the lists
//   run to the end even if every send blocked until its recv is posted (SendMode
//   kRendezvous), hence also with non-blocking or buffered sends and with NCCL's in-order
//   comm stream (kBuffered, kStreams). For speed, do not block the computes on sends: with
//   unit costs, kBuffered and kStreams reach the ideal bubble for every schedule, while
//   kRendezvous (a send(...)->wait() per send) does for GPipe and 1F1B only and idles two to
//   four times longer with interleaving. NcclCommunicator today: a send is deferred until a
//   Work of the group is waited or destroyed, and either makes the compute stream wait for
//   the transfer, so the device runs the lists as kRendezvous; a kept, unwaited send Work is
//   held back until the next recv's wait (rank 0 has none in its warm-up). The MPI and
//   host-staged communicators (MPI_Isend) run them close to kBuffered.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace peng {

enum class ScheduleKind { kGPipe, k1F1B, kInterleaved1F1B };

// "gpipe", "1f1b", "interleaved": the built-in schedules' names in the registry
// (parallel/pipeline/schedule_registry.h, which looks names up).
const char* schedule_kind_name(ScheduleKind kind);

struct Action {
  enum Op { kForward, kBackward, kSendActivation, kRecvActivation, kSendGrad, kRecvGrad };
  Op op;
  int micro;  // micro-batch, 0..m-1
  int chunk;  // model chunk on this rank, 0..v-1 (global stage chunk * pp + rank)
  int peer;   // pp-group rank sent to / received from; -1 for kForward and kBackward
  bool operator==(const Action&) const = default;
};

// schedule[r] = the actions of pipeline rank r, in execution order.
using Schedule = std::vector<std::vector<Action>>;

inline int stage_of(int chunk, int rank, int pp) { return chunk * pp + rank; }
inline int rank_of_stage(int stage, int pp) { return stage % pp; }
inline int chunk_of_stage(int stage, int pp) { return stage / pp; }
inline bool is_transfer(const Action& a) { return a.op >= Action::kSendActivation; }
inline bool is_send(const Action& a) {
  return a.op == Action::kSendActivation || a.op == Action::kSendGrad;
}

// The stage boundary a transfer of `rank` crosses: b for a message between stages b and b+1.
int transfer_boundary(const Action& a, int rank, int pp);
// An MPI tag for a transfer of `rank`, the same at both ends: it encodes (micro, boundary,
// activation or gradient) modulo 32000 (MpiCommunicator's user tags stay below 32000).
// Unique among the transfers of one step while m * pp * v * 2 <= 32000; beyond that it
// still matches correctly because both ends issue the transfers in the same order.
int p2p_tag(const Action& a, int rank, int pp, int virtual_stages);

// The schedule of one step for every pipeline rank (see the top of this file). Throws
// InputError for the combinations validate_pipeline rejects (but for n_layer).
Schedule make_schedule(ScheduleKind kind, int pp, int virtual_stages, int micro_batches);

// A schedule from each rank's compute order (kForward / kBackward actions only, in the order
// the rank runs them): adds the receive before each compute that needs one and the send after
// each that produces one, then orders the transfers so that synchronous sends cannot deadlock
// when the compute orders allow it. How make_schedule builds the built-in ones, and the easy
// way to write a new schedule (parallel/pipeline/schedule_registry.h); check the result with
// check_schedule.
Schedule with_transfers(const Schedule& compute_orders, int pp, int virtual_stages);

// Checks a pipeline configuration; InputError naming the numbers: pp < 1, virtual_stages
// < 1, micro_batches < 1, virtual_stages > 1 with a schedule other than interleaved, n_layer
// less than pp * virtual_stages (a stage without a layer), 1F1B or interleaved with fewer than pp
// micro-batches, interleaved with micro_batches not a multiple of pp.
void validate_pipeline(ScheduleKind kind, int n_layer, int pp, int virtual_stages,
                       int micro_batches);

// One line per rank: "rank 0: F0 sA0 F1 sA1 rG0 B0 ...". F/B = forward/backward, sA/rA =
// send/recv activation, sG/rG = send/recv gradient, then the micro-batch, and ".chunk" when
// the schedule has chunks other than 0 (F3.1). show_transfers = false lists computes only.
std::string format_schedule(const Schedule& schedule, bool show_transfers = true);
// One action in words, for messages: "send activation micro 3 chunk 1 to rank 2".
std::string describe_action(const Action& a);

// How check_schedule's simulation runs transfers. Every schedule make_schedule builds runs
// to the end under all three; a list that runs under kRendezvous runs under the others.
// Timing: under kBuffered and kStreams, with unit costs, GPipe and 1F1B idle exactly
// (pp-1)/(m+pp-1) of the rank-time and interleaved 1F1B (pp-1)/(v*m+pp-1) (Megatron's
// bubble). Under kRendezvous, interleaved lists idle far more (a host that blocks on each
// send): deadlock-free, but not how to run them.
enum class SendMode {
  // A send blocks its rank until the peer reaches the matching recv (MPI_Ssend; a
  // send(...)->wait() on every send). The strictest: the default, for deadlock freedom.
  kRendezvous,
  // A send never blocks; a recv waits for its message (MPI_Isend with eager delivery).
  kBuffered,
  // Two streams per rank (NCCL, if a send did not order the compute stream after it):
  // computes run in list order on the compute stream, transfers in list order on the comm
  // stream. A transfer starts once the
  // computes listed before it have finished and completes when its peer's matching transfer
  // has started too; a compute starts once the recvs listed before it have completed.
  kStreams,
};

struct CheckOptions {
  SendMode send_mode = SendMode::kRendezvous;
  int64_t forward_cost = 1;   // simulated time of one kForward (per chunk)
  int64_t backward_cost = 2;  // ... of one kBackward; transfers take no time
  // Per global stage (chunk * pp + rank): a weight both costs are multiplied by (uneven
  // stages, parallel/pipeline/stage_split.h); empty: 1 for every stage.
  std::vector<int64_t> stage_cost = {};
};

struct ScheduleCheck {
  bool ok = false;
  std::string error;       // the first violation found, empty when ok
  int64_t steps = 0;       // simulated time until the last rank finishes
  int64_t busy_slots = 0;  // sum over ranks of the time spent computing
  int64_t idle_slots = 0;  // sum over ranks of (steps - busy time)
  // Fraction of rank-time spent idle: the bubble (0 when not ok).
  double idle_fraction() const;
};

// Checks `schedule` against (pp, v, m), in this order, and reports the first violation,
// naming the rank, the action's index in its list and the action:
// 1. shape: pp lists; ops, micro-batches and chunks in range; the peer of each transfer is
//    the rank of the neighbouring stage (and no transfer when it is this rank); -1 otherwise;
// 2. completeness: every (micro, chunk) forward and backward exactly once on every rank,
//    and every transfer the layout needs exactly once (so sends and recvs pair up);
// 3. order on each rank: forward before its backward; a send after the compute producing
//    it, a recv before the compute consuming it; with pp == 1, forward(m, c) after
//    forward(m, c-1) and backward(m, c) after backward(m, c+1);
// 4. no deadlock: a simulation with options.send_mode and the options' costs runs every
//    list to its end (reported: the time and, for each rank stuck, the action it waits at);
// 5. transfer order: between each pair of ranks the sends and the recvs come in the same
//    order (NCCL matches by order).
// Together these make every forward of stage s+1 follow the forward of stage s (through a
// matching send/recv pair) and every backward of stage s follow that of stage s+1.
ScheduleCheck check_schedule(const Schedule& schedule, int pp, int virtual_stages,
                             int micro_batches, const CheckOptions& options = {});

}  // namespace peng
