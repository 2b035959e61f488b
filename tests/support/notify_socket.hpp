// A service manager's end of the notification protocol, for tests: a datagram socket bound at
// a path or an abstract name ('@'), as systemd binds NOTIFY_SOCKET.
#pragma once

#include <string>

#include "shoal/unique_fd.hpp"

namespace shoal::test {

UniqueFd listen_for_notifications(const std::string& name);
// The next datagram, without waiting; "(nothing)" when none is queued.
std::string next_notification(const UniqueFd& fd);

}  // namespace shoal::test
