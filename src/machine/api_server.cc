#include "machine/api_server.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "shoal/log.hpp"

namespace shoal {

namespace {

using Json = nlohmann::json;
constexpr int kClientTimeoutMs = 5000;

Result<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof a.sun_path)
    return Error("socket path '" + path + "': expected 1.." +
                 std::to_string(sizeof a.sun_path - 1) + " characters");
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

// Reads up to a newline (or EOF) within the deadline; at most kMaxApiRequestBytes.
Result<std::string> read_line(int fd, int timeout_ms) {
  std::string line;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int r = poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno_error("poll");
    if (r == 0) return Error("no complete request within " + std::to_string(timeout_ms) + " ms");
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("read");
    if (n == 0) return line;
    line.append(buf, static_cast<size_t>(n));
    if (const size_t nl = line.find('\n'); nl != std::string::npos) return line.substr(0, nl);
    if (line.size() > kMaxApiRequestBytes)
      return Error("request over " + std::to_string(kMaxApiRequestBytes) + " bytes");
  }
}

void write_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the client went away: nothing to tell it
    done += static_cast<size_t>(n);
  }
}

}  // namespace

Result<ApiRequest> parse_api_request(const std::string& line) {
  if (line.size() > kMaxApiRequestBytes)
    return Error("request over " + std::to_string(kMaxApiRequestBytes) + " bytes");
  const Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error("request: not valid JSON");
  if (!j.is_object()) return Error("request: expected a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "command" && it.key() != "path" && it.key() != "stop" &&
        it.key() != "working_set_ms")
      return Error("request: unknown field '" + it.key() + "'");
  const auto cmd = j.find("command");
  if (cmd == j.end() || !cmd->is_string()) return Error("command: expected a string");
  const std::string c = cmd->get<std::string>();
  ApiRequest r{};
  if (c == "pause") {
    r.command = ApiRequest::Command::kPause;
  } else if (c == "resume") {
    r.command = ApiRequest::Command::kResume;
  } else if (c == "status") {
    r.command = ApiRequest::Command::kStatus;
  } else if (c == "metrics") {
    r.command = ApiRequest::Command::kMetrics;
  } else if (c == "snapshot") {
    r.command = ApiRequest::Command::kSnapshot;
  } else if (c == "quit") {
    r.command = ApiRequest::Command::kQuit;
  } else {
    return Error("command: unknown '" + c + "' (pause, resume, status, metrics, snapshot, quit)");
  }
  const auto path = j.find("path");
  const auto stop = j.find("stop");
  const auto ws = j.find("working_set_ms");
  if (r.command == ApiRequest::Command::kSnapshot) {
    if (path == j.end() || !path->is_string() || path->get<std::string>().empty())
      return Error("path: snapshot needs a file path");
    r.path = path->get<std::string>();
    if (stop != j.end()) {
      if (!stop->is_boolean()) return Error("stop: expected true or false");
      r.stop = stop->get<bool>();
    }
    if (ws != j.end()) {
      if (!ws->is_number_unsigned() || ws->get<uint64_t>() > kMaxWorkingSetMs)
        return Error("working_set_ms: expected 0.." + std::to_string(kMaxWorkingSetMs));
      r.working_set_ms = static_cast<uint32_t>(ws->get<uint64_t>());
    }
  } else if (path != j.end() || stop != j.end() || ws != j.end()) {
    return Error(std::string(path != j.end()   ? "path"
                             : stop != j.end() ? "stop"
                                               : "working_set_ms") +
                 ": only snapshot takes it");
  }
  return r;
}

std::string format_api_request(const ApiRequest& r) {
  static const char* const kNames[] = {"pause", "resume", "status", "metrics", "snapshot", "quit"};
  Json j = Json::object();
  j["command"] = kNames[static_cast<int>(r.command)];
  if (r.command == ApiRequest::Command::kSnapshot) {
    j["path"] = r.path;
    j["stop"] = r.stop;
    if (r.working_set_ms != 0) j["working_set_ms"] = r.working_set_ms;
  }
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Result<ApiAnswer> parse_api_reply(const std::string& line) {
  const Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Error("reply: not a JSON object");
  const auto ok = j.find("ok");
  if (ok == j.end() || !ok->is_boolean()) return Error("reply: ok: expected true or false");
  ApiAnswer a;
  if (!ok->get<bool>()) {
    const auto e = j.find("error");
    a.error = e != j.end() && e->is_string() ? e->get<std::string>() : "failed (no reason given)";
  }
  if (const auto m = j.find("metrics"); m != j.end() && m->is_string())
    a.metrics = m->get<std::string>();
  return a;
}

std::string format_api_reply(const ApiReply& reply) {
  Json j = Json::object();
  j["ok"] = reply.error.empty();
  if (!reply.error.empty()) j["error"] = reply.error;
  for (const auto& field : reply.fields)
    std::visit([&](const auto& v) { j[field.first] = v; }, field.second);
  // Replace, not throw, on bytes that are not UTF-8 (a guest-chosen string, one day).
  return j.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

ApiServer::ApiServer(std::string path, UniqueFd listener, Handler handler)
    : path_(std::move(path)),
      listener_(std::move(listener)),
      stop_fd_(eventfd(0, EFD_CLOEXEC)),
      handler_(std::move(handler)) {}

ApiServer::~ApiServer() {
  stop();
}

Result<std::unique_ptr<ApiServer>> ApiServer::start(const std::string& path, Handler handler) {
  const std::string what = "--api-socket " + path;
  auto addr = unix_address(path);
  if (!addr) return addr.error().context(what);
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0)
    return Error(what + ": already exists (another shoal, or a stale socket to remove)");
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return errno_error(what + ": socket");
  // 0600 from the start: bind() creates the file with the umask applied.
  const mode_t old = ::umask(0177);
  const int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
  ::umask(old);
  if (rc < 0) return errno_error(what + ": bind");
  if (::listen(fd.get(), 8) < 0) {
    ::unlink(path.c_str());
    return errno_error(what + ": listen");
  }
  std::unique_ptr<ApiServer> s(new ApiServer(path, std::move(fd), std::move(handler)));
  if (!s->stop_fd_.valid()) return errno_error(what + ": eventfd");
  s->thread_ = std::thread([p = s.get()] {
    pthread_setname_np(pthread_self(), "api");
    p->loop();
  });
  return s;
}

void ApiServer::stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  (void)!::write(stop_fd_.get(), &one, sizeof one);
  thread_.join();
  ::unlink(path_.c_str());
}

void ApiServer::loop() {
  pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      log::error("api: poll: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!client.valid()) continue;  // the client gave up already
    serve(client.get());
  }
}

void ApiServer::serve(int client) {
  auto line = read_line(client, kClientTimeoutMs);
  if (!line) return write_all(client, format_api_reply(ApiReply::failure(line.error().message())));
  auto request = parse_api_request(*line);
  if (!request)
    return write_all(client, format_api_reply(ApiReply::failure(request.error().message())));
  write_all(client, format_api_reply(handler_(*request)));
}

Result<std::string> api_call(const std::string& path, const std::string& request_line) {
  auto addr = unix_address(path);
  if (!addr) return addr.error();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return errno_error("socket");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) < 0)
    return errno_error(path);
  write_all(fd.get(), request_line + "\n");
  ::shutdown(fd.get(), SHUT_WR);
  // A snapshot of a large guest takes a while: wait minutes, not seconds.
  auto reply = read_line(fd.get(), 10 * 60 * 1000);
  if (!reply) return reply.error().context(path);
  if (reply->empty()) return Error(path + ": no reply");
  return *reply;
}

}  // namespace shoal
