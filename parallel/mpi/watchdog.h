// CollectiveWatch: turns a hung collective into an error that names the ranks that did
// not arrive (after c10d's watchdog and flight recorder).
//
// Every MpiCommunicator numbers its collectives (#1, #2, ... per group, the same on every
// member, since all members issue the same collectives in the same order) and records
// here, before issuing one, that this process entered collective #n on group G.
// A responder thread answers other ranks' questions "how far did you get on group G?"
// over a private duplicate of MPI_COMM_WORLD, so a rank that is busy elsewhere (stuck in
// compute, waiting in another collective) still answers; a dead, stopped or unreachable
// rank does not.
//
// When a Work times out, `describe_missing` asks every other member of its group and
// waits up to `grace_s` for answers: a member that entered #n has arrived; one that
// answers with a lower number is named with the last collective it entered; one that
// does not answer is named as dead, stopped or unreachable.
//
// Threading: every method may be called from any thread (MPI_THREAD_MULTIPLE).
// Lifetime: start() after MPI_Init (by mpi_world()); stop() before MPI_Finalize.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <string>

namespace peng {

namespace watch {

// Starts the responder thread on a duplicate of MPI_COMM_WORLD (idempotent).
void start();
// Stops and joins the responder thread (idempotent).
void stop();

// Records that this process entered collective `seq` on the group with key `key` (the same
// on every member, distinct between groups: MpiCommunicator uses the name and a hash of
// the members' world ranks; at most 55 characters are compared).
void note_entered(const std::string& key, int64_t seq);

// Which members of `comm` (key `key`, called `group` in the text) had not entered
// collective `seq`, as text naming world ranks, e.g. "world rank 3 did not answer (dead,
// stopped or unreachable); world rank 1 is at collective #6 on group dp". Waits at most
// `grace_s` seconds for answers.
std::string describe_missing(MPI_Comm comm, const std::string& key, const std::string& group,
                             int64_t seq, double grace_s);

}  // namespace watch

}  // namespace peng
