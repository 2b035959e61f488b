// The control API's request parser and reply format: every bad request gets an error that
// names what is wrong, and nothing throws.
#include <gtest/gtest.h>

#include "machine/api_server.hpp"

namespace shoal {
namespace {

std::string error_of(const std::string& line) {
  auto r = parse_api_request(line);
  return r.ok() ? std::string("ok") : r.error().message();
}

TEST(ApiRequest, GoodRequestsParse) {
  auto r = parse_api_request(R"({"command":"snapshot","path":"/tmp/x.snap","stop":true})");
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->command, ApiRequest::Command::kSnapshot);
  EXPECT_EQ(r->path, "/tmp/x.snap");
  EXPECT_TRUE(r->stop);
  for (const char* c : {"pause", "resume", "status", "metrics", "quit"})
    EXPECT_EQ(error_of(std::string(R"({"command":")") + c + "\"}"), "ok") << c;
  // What the client sends parses back to the same request.
  ApiRequest s{ApiRequest::Command::kSnapshot, "/a \"b\"\n", false};
  auto back = parse_api_request(format_api_request(s));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->path, s.path);
}

TEST(ApiRequest, BadRequestsNameTheProblem) {
  EXPECT_EQ(error_of("pause"), "request: not valid JSON");
  EXPECT_EQ(error_of(""), "request: not valid JSON");
  EXPECT_EQ(error_of("{\"command\":\"pause\""), "request: not valid JSON");
  EXPECT_EQ(error_of("[1,2]"), "request: expected a JSON object");
  EXPECT_EQ(error_of("{}"), "command: expected a string");
  EXPECT_EQ(error_of(R"({"command":7})"), "command: expected a string");
  EXPECT_EQ(error_of(R"({"command":"reboot"})"),
            "command: unknown 'reboot' (pause, resume, status, metrics, snapshot, quit)");
  EXPECT_EQ(error_of(R"({"command":"snapshot"})"), "path: snapshot needs a file path");
  EXPECT_EQ(error_of(R"({"command":"snapshot","path":""})"), "path: snapshot needs a file path");
  EXPECT_EQ(error_of(R"({"command":"snapshot","path":5})"), "path: snapshot needs a file path");
  EXPECT_EQ(error_of(R"({"command":"snapshot","path":"/x","stop":"yes"})"),
            "stop: expected true or false");
  EXPECT_EQ(error_of(R"({"command":"pause","path":"/x"})"), "path: only snapshot takes it");
  EXPECT_EQ(error_of(R"({"command":"pause","force":true})"), "request: unknown field 'force'");
  EXPECT_NE(error_of(std::string(70000, ' ')).find("over 65536 bytes"), std::string::npos);
  EXPECT_EQ(error_of("{\"command\":\"\xff\"}"), "request: not valid JSON");
}

TEST(ApiReply, OkAndErrorRepliesAreOneJsonLine) {
  EXPECT_EQ(
      format_api_reply(ApiReply{}.with("state", std::string("paused")).with("n", uint64_t{3})),
      "{\"n\":3,\"ok\":true,\"state\":\"paused\"}\n");
  EXPECT_EQ(format_api_reply(ApiReply::failure("pause: already paused")),
            "{\"error\":\"pause: already paused\",\"ok\":false}\n");
  auto a = parse_api_reply("{\"error\":\"pause: already paused\",\"ok\":false}");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->error, "pause: already paused");
  EXPECT_FALSE(parse_api_reply("nonsense").ok());
}

}  // namespace
}  // namespace shoal
