// The `peng` command line: subcommands train, data, export, ckpt.
#pragma once

namespace peng {

// Runs the command; returns the exit code. Throws peng::Error on bad input.
int run_cli(int argc, char** argv);

}  // namespace peng
