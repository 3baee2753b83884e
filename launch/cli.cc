#include "launch/cli.h"

#include <CLI/CLI.hpp>

namespace peng {

int run_cli(int argc, char** argv) {
  CLI::App app{"peng: train transformer foundation models"};
  app.require_subcommand(1);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return 0;
}

}  // namespace peng
