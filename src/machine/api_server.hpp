// The control API: JSON requests on a Unix socket (mode 0600), one request per connection,
// one line each way:
//   {"command": "pause" | "resume" | "status" | "metrics" | "quit"}
//   {"command": "snapshot", "path": "/var/lib/shoal/vm.snap", "stop": false,
//    "working_set_ms": 500}
// Replies are {"ok": true, ...fields} or {"ok": false, "error": "..."}. Bad JSON, unknown
// commands, wrong fields and requests over 64 KiB get an error reply; a client that sends
// nothing for 5 s is dropped. One thread serves one request at a time, so the handler never
// runs twice at once. `shoal ctl` is the client.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "shoal/status.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal {

inline constexpr size_t kMaxApiRequestBytes = 64u << 10;

struct ApiRequest {
  enum class Command { kPause, kResume, kStatus, kMetrics, kSnapshot, kQuit } command;
  std::string path;   // kSnapshot
  bool stop = false;  // kSnapshot: stay paused afterwards
  // kSnapshot: record the pages the guest touches for this long before pausing it, and store
  // them first (0: no working set).
  uint32_t working_set_ms = 0;
};

inline constexpr uint32_t kMaxWorkingSetMs = 600'000;

using ApiValue = std::variant<bool, uint64_t, double, std::string>;

struct ApiReply {
  std::string error;  // empty: ok
  std::vector<std::pair<std::string, ApiValue>> fields;

  static ApiReply failure(std::string why) { return ApiReply{std::move(why), {}}; }
  ApiReply& with(std::string name, ApiValue v) {
    fields.emplace_back(std::move(name), std::move(v));
    return *this;
  }
};

// Parses one request line; errors name the field ("command: expected a string").
Result<ApiRequest> parse_api_request(const std::string& line);
std::string format_api_request(const ApiRequest& request);  // one line, no newline
std::string format_api_reply(const ApiReply& reply);
// What a client needs of a reply line: the error (empty when ok) and the metrics text.
struct ApiAnswer {
  std::string error;
  std::string metrics;
};
Result<ApiAnswer> parse_api_reply(const std::string& line);

class ApiServer {
 public:
  using Handler = std::function<ApiReply(const ApiRequest&)>;
  // Binds `path` (which must not exist) and serves requests on a thread until stop().
  static Result<std::unique_ptr<ApiServer>> start(const std::string& path, Handler handler);
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;
  ~ApiServer();
  void stop();  // joins the thread and removes the socket file

 private:
  ApiServer(std::string path, UniqueFd listener, Handler handler);
  void loop();
  void serve(int client);

  std::string path_;
  UniqueFd listener_;
  UniqueFd stop_fd_;
  Handler handler_;
  std::thread thread_;
};

// The client side (`shoal ctl`): sends one request line and returns the reply line.
Result<std::string> api_call(const std::string& path, const std::string& request_line);

}  // namespace shoal
