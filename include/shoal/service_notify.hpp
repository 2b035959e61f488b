// Tells the service manager (systemd, Type=notify) how the service is doing: "READY=1",
// "STATUS=...", "STOPPING=1". The protocol is one datagram on the Unix socket named by
// $NOTIFY_SOCKET (a path, or an abstract name written with a leading '@'); without it this does
// nothing. Spoken here rather than through libsystemd, which would load seven more shared
// libraries into every shoal process, about a millisecond of start-up on the nested hosts.
#pragma once

#include <string>

namespace shoal {

// Sends `state` (lines "KEY=value"); false when there is no service manager to tell or the
// datagram could not be sent (the service goes on either way, as with sd_notify).
bool notify_service_manager(const std::string& state);

}  // namespace shoal
