// The pod-side commands of the shoal binary: `shoal node`, `shoal pod validate`,
// `shoal pod ping`. Each returns the process exit code.
#pragma once

#include <string>

#include "cli/cli.hpp"

namespace shoal {

int run_node(const NodeCommand& command);
int validate_pod(const std::string& path);
int ping_pod(const PodPingCommand& command);

}  // namespace shoal
