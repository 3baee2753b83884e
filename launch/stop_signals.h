// Preemption: SIGTERM and SIGUSR1 (how Slurm and cluster schedulers warn a job) ask the
// training loop to finish its step, save a checkpoint and exit 0.
//
// The handler only records the signal. Ranks may receive it at different steps, so the
// loop agrees once per step (a max-reduce over every rank) before acting on it.
#pragma once

namespace peng {

// Installs the handlers (idempotent). SIGXFSZ is ignored too, so a write past the file
// size limit fails with EFBIG, an error the checkpoint writer reports, instead of killing.
void install_stop_handlers();
// The signal received since installation (SIGTERM / SIGUSR1), or 0.
int stop_signal();
// Not a signal: a program's step callback asked to stop (TrainerHooks::on_step). Larger than
// any signal number, so the ranks' agreement (a max) keeps it.
inline constexpr int kStopRequested = 1000;
const char* signal_name(int sig);

}  // namespace peng
