// `shoal node` as a systemd Type=notify service would see it, against a NOTIFY_SOCKET and a
// JOURNAL_STREAM of the test's own: READY=1 with a STATUS= line once it listens, STOPPING=1 on
// SIGTERM, exit 0, and log lines the journal can take as they are (no colours, no timestamps).
#include <gtest/gtest.h>
#include <unistd.h>

#include <regex>
#include <string>
#include <vector>

#include "shoal/unique_fd.hpp"
#include "support/notify_socket.hpp"
#include "support/process.hpp"

namespace shoal::test {
namespace {

std::vector<std::string> datagrams(const UniqueFd& fd) {
  std::vector<std::string> all;
  for (std::string d; (d = next_notification(fd)) != "(nothing)";) all.push_back(d);
  return all;
}

TEST(NodeService, TellsTheServiceManagerReadyThenStoppingAndLogsBareLines) {
  const std::string dir = ::testing::TempDir();
  const std::string socket_path = dir + "/notify-node-" + std::to_string(getpid());
  const std::string secret = dir + "/notify-node-secret-" + std::to_string(getpid());
  unlink(socket_path.c_str());
  const UniqueFd fd = listen_for_notifications(socket_path);
  // The node answers SIGTERM only once it listens: wait for its line, as systemd waits for
  // READY=1 before it would send one.
  const std::string script =
      "umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > " + secret +
      "; \"$SHOAL\" node --listen 127.0.0.1:0 --secret-file " + secret +
      " --name n 2>node.log & p=$!; for i in $(seq 200); do grep -q listening node.log && "
      "break; sleep 0.05; done; kill -TERM $p; wait $p; echo exit=$?; cat node.log >&2; "
      "rm -f node.log " +
      secret;
  auto r = run_process({"/usr/bin/env", "NOTIFY_SOCKET=" + socket_path, "JOURNAL_STREAM=8:1",
                        "SHOAL=" SHOAL_BINARY, "bash", "-c", "cd " + dir + " && " + script},
                       std::chrono::seconds(30));
  unlink(socket_path.c_str());
  EXPECT_NE(r.out.find("exit=0"), std::string::npos) << r.out << r.err;
  const auto got = datagrams(fd);
  ASSERT_EQ(got.size(), 2u) << r.err;
  EXPECT_TRUE(
      std::regex_match(got[0], std::regex("READY=1\nSTATUS=listening on 127\\.0\\.0\\.1:[0-9]+")))
      << got[0];
  EXPECT_EQ(got[1], "STOPPING=1\nSTATUS=stopping");
  // Under JOURNAL_STREAM each line is "[level] text": the journal adds time and unit itself.
  const std::regex bare(R"(\[(info|warning|error)\] [^\x1b]*)");
  int lines = 0;
  for (size_t at = 0, end; (end = r.err.find('\n', at)) != std::string::npos; at = end + 1) {
    const std::string line = r.err.substr(at, end - at);
    EXPECT_TRUE(std::regex_match(line, bare)) << line;
    ++lines;
  }
  EXPECT_EQ(lines, 2) << r.err;
}

}  // namespace
}  // namespace shoal::test
