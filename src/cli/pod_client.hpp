// `shoal pod up|status|down SPEC`: the client side of pod control. `up` hands the pod to
// every host's node service in phases (start, connect the mesh, load on host 0, run), then
// follows it: a status line, the guest console from host 0, and each host's outcome. Ctrl-C
// stops the pod. `status` and `down` work from any host that can reach the nodes.
#pragma once

#include "cli/cli.hpp"

namespace shoal {

// The process exit code: for `up`, the guest's exit code, or 1 when the pod failed.
int control_pod(const PodControlCommand& command);

}  // namespace shoal
