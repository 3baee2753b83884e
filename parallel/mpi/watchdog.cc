#include "peng/parallel/mpi/watchdog.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace peng::watch {

namespace {

constexpr int kQueryTag = 31001, kReplyTag = 31002;

// A question "how far did you get on this group?" (the name truncated to fit), and its
// answer, which echoes the question's id so a late answer to an earlier question is
// never taken for the current one.
struct Query {
  int64_t id = 0;
  char group[56] = {};
};
struct Answer {
  int64_t id = 0;
  int64_t seq = 0;  // last collective entered on the group; 0: none
};

struct State {
  std::mutex mu;
  std::map<std::string, int64_t> entered;  // group -> last collective entered
  MPI_Comm comm = MPI_COMM_NULL;           // private duplicate of MPI_COMM_WORLD
  std::thread responder;
  std::atomic<bool> stopping{false};
  std::atomic<int64_t> next_query{1};
};

State& state() {
  static State* s = new State;  // used from atexit handlers: never destroyed
  return *s;
}

Query make_query(const std::string& group) {
  Query q;
  std::strncpy(q.group, group.c_str(), sizeof(q.group) - 1);
  return q;
}

int64_t last_entered(const char* group) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  for (const auto& [name, seq] : s.entered) {
    if (make_query(name).group == std::string(group)) return seq;
  }
  return 0;
}

void respond(MPI_Comm comm) {
  using namespace std::chrono_literals;
  Query q;
  MPI_Request request;
  static_assert(sizeof(Query) == 64 && sizeof(Answer) == 16);
  MPI_Irecv(&q, sizeof(q), MPI_BYTE, MPI_ANY_SOURCE, kQueryTag, comm, &request);
  std::vector<std::pair<MPI_Request, std::unique_ptr<Answer>>> replies;
  while (!state().stopping.load()) {
    int done = 0;
    MPI_Status status;
    MPI_Test(&request, &done, &status);
    if (done) {
      auto answer = std::make_unique<Answer>(Answer{q.id, last_entered(q.group)});
      MPI_Request r;
      MPI_Isend(answer.get(), sizeof(Answer), MPI_BYTE, status.MPI_SOURCE, kReplyTag, comm, &r);
      replies.emplace_back(r, std::move(answer));
      MPI_Irecv(&q, sizeof(q), MPI_BYTE, MPI_ANY_SOURCE, kQueryTag, comm, &request);
      continue;
    }
    for (size_t i = 0; i < replies.size();) {
      int sent = 0;
      MPI_Test(&replies[i].first, &sent, MPI_STATUS_IGNORE);
      if (sent) {
        replies.erase(replies.begin() + std::ptrdiff_t(i));
      } else {
        ++i;
      }
    }
    std::this_thread::sleep_for(20ms);
  }
  MPI_Cancel(&request);
  MPI_Wait(&request, MPI_STATUS_IGNORE);
  for (auto& r : replies) {  // a reply to a vanished rank: let it go, leak its buffer
    MPI_Request_free(&r.first);
    r.second.release();
  }
}

double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

void start() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.comm != MPI_COMM_NULL) return;
  MPI_Comm_dup(MPI_COMM_WORLD, &s.comm);
  MPI_Comm_set_errhandler(s.comm, MPI_ERRORS_RETURN);
  s.responder = std::thread(respond, s.comm);
}

void stop() {
  State& s = state();
  if (s.comm == MPI_COMM_NULL) return;
  s.stopping = true;
  s.responder.join();
  MPI_Comm_free(&s.comm);
  s.comm = MPI_COMM_NULL;
}

void note_entered(const std::string& group, int64_t seq) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.entered[group] = seq;
}

std::string describe_missing(MPI_Comm comm, const std::string& key, const std::string& group,
                             int64_t seq, double grace_s) {
  State& s = state();
  if (s.comm == MPI_COMM_NULL) return "";
  int size = 0, me = 0;
  MPI_Comm_size(comm, &size);
  MPI_Comm_rank(comm, &me);
  MPI_Group g, world_group;
  MPI_Comm_group(comm, &g);
  MPI_Comm_group(MPI_COMM_WORLD, &world_group);
  std::vector<int> members(size_t(size), 0), world(size_t(size), 0);
  for (int i = 0; i < size; ++i) members[size_t(i)] = i;
  MPI_Group_translate_ranks(g, size, members.data(), world_group, world.data());
  MPI_Group_free(&g);
  MPI_Group_free(&world_group);

  // Buffers stay alive after we give up on a rank: MPI may still touch them.
  auto* query = new Query(make_query(key));
  query->id = s.next_query++;
  auto* answers = new Answer[size_t(size)]();
  std::vector<MPI_Request> recvs(size_t(size), MPI_REQUEST_NULL);
  auto post_recv = [&](int i) {
    MPI_Irecv(&answers[i], sizeof(Answer), MPI_BYTE, world[size_t(i)], kReplyTag, s.comm,
              &recvs[size_t(i)]);
  };
  for (int i = 0; i < size; ++i) {
    if (i == me) continue;
    MPI_Request send;
    MPI_Isend(query, sizeof(Query), MPI_BYTE, world[size_t(i)], kQueryTag, s.comm, &send);
    MPI_Request_free(&send);
    post_recv(i);
  }
  std::vector<bool> answered(size_t(size), false);
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    bool all = true;
    for (int i = 0; i < size; ++i) {
      if (i == me || answered[size_t(i)]) continue;
      int done = 0;
      MPI_Test(&recvs[size_t(i)], &done, MPI_STATUS_IGNORE);
      if (done && answers[i].id != query->id) {  // a late answer to an earlier question
        post_recv(i);
        done = 0;
      }
      answered[size_t(i)] = done != 0;
      all = all && done;
    }
    if (all || seconds(std::chrono::steady_clock::now() - t0) > grace_s) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::string out;
  auto add = [&out](const std::string& s) { out += (out.empty() ? "" : "; ") + s; };
  for (int i = 0; i < size; ++i) {
    if (i == me) continue;
    const std::string who = "world rank " + std::to_string(world[size_t(i)]);
    if (!answered[size_t(i)]) {
      MPI_Cancel(&recvs[size_t(i)]);
      MPI_Request_free(&recvs[size_t(i)]);
      add(who + " did not answer (dead, stopped or unreachable)");
    } else if (answers[i].seq == 0) {
      add(who + " has not entered any collective on group " + group);
    } else if (answers[i].seq < seq) {
      add(who + " is at collective #" + std::to_string(answers[i].seq) + " on group " + group);
    }
  }
  if (out.empty()) out = "every rank of the group arrived (the transport is stalled)";
  return out;
}

}  // namespace peng::watch
