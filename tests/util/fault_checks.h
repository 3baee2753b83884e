// The fault checks of multi-rank training, shared by the CPU form (tests/launch/fault_test.cc)
// and the GPU forms (tests/gpu/multi_gpu_train_test.cc: staged, NCCL): a rank that dies or
// hangs mid-run ends the whole job with a non-zero exit and a message naming it, well inside
// the collective timeout; never a hang.
#pragma once

#include <string>
#include <vector>

namespace peng::testing {

// A 3-rank data-parallel job on the tiny reference model (that would run for hours, with
// `extra` flags) is killed at rank 1 (SIGKILL) once it has logged 3 steps: the job ends within
// 90 s with a non-zero exit and output naming rank 1.
void expect_killed_rank_ends_the_job(const std::vector<std::string>& extra = {});

// The same job with a 3 s collective timeout; rank 1 is stopped (SIGSTOP: alive but silent,
// no launcher notices): every `error:` line names a collective on group dp, dp-control or
// world, "did not complete within 3 s", and one names world rank 1 as not answering.
void expect_hung_rank_named(const std::vector<std::string>& extra = {});

}  // namespace peng::testing
