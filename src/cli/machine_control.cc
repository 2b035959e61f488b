#include "cli/machine_control.hpp"

#include <cstdio>
#include <cstdlib>

#include "machine/api_server.hpp"

namespace shoal {

int control_machine(const CtlCommand& c) {
  ApiRequest request{};
  if (c.command == "pause") request.command = ApiRequest::Command::kPause;
  if (c.command == "resume") request.command = ApiRequest::Command::kResume;
  if (c.command == "status") request.command = ApiRequest::Command::kStatus;
  if (c.command == "metrics") request.command = ApiRequest::Command::kMetrics;
  if (c.command == "quit") request.command = ApiRequest::Command::kQuit;
  if (c.command == "snapshot") {
    request.command = ApiRequest::Command::kSnapshot;
    request.stop = c.stop;
    request.working_set_ms = c.working_set_ms;
    // Relative to where ctl runs, not to where shoal was started.
    request.path = c.path;
    if (!request.path.empty() && request.path[0] != '/')
      if (char* cwd = ::realpath(".", nullptr)) {
        request.path = std::string(cwd) + "/" + request.path;
        std::free(cwd);
      }
  }
  auto reply = api_call(c.socket, format_api_request(request));
  if (!reply) return report_error(kExitVmmError, reply.error().message());
  auto answer = parse_api_reply(*reply);
  if (!answer) return report_error(kExitVmmError, answer.error().message());
  if (!answer->error.empty()) return report_error(kExitVmmError, answer->error);
  if (c.command == "metrics") {
    std::fputs(answer->metrics.c_str(), stdout);
  } else {
    std::printf("%s\n", reply->c_str());
  }
  return 0;
}

}  // namespace shoal
