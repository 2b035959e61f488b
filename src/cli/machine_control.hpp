// `shoal ctl SOCKET COMMAND`: one request to a running shoal's control API.
#pragma once

#include "cli/cli.hpp"

namespace shoal {

// Prints the reply (metrics as Prometheus text, the rest as JSON) and returns 0, or prints
// the error and returns 1.
int control_machine(const CtlCommand& command);

}  // namespace shoal
