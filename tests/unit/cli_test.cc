#include "cli/cli.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "shoal/size.hpp"

namespace shoal {
namespace {

CliOutcome parse(std::vector<const char*> args) {
  args.insert(args.begin(), "shoal");
  return parse_cli(static_cast<int>(args.size()), args.data());
}

// Every usage error: exit code 2, one line that starts "shoal: error:" and names `needle`.
void expect_usage_error(std::vector<const char*> args, const std::string& needle) {
  auto r = parse(args);
  EXPECT_FALSE(r.run.has_value());
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_EQ(r.message.rfind("shoal: error: ", 0), 0u) << r.message;
  EXPECT_NE(r.message.find(needle), std::string::npos) << r.message;
}

TEST(Cli, VersionAndHelpExitZero) {
  auto v = parse({"--version"});
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_FALSE(v.run.has_value());
  EXPECT_EQ(v.message, "shoal 0.1.0");
  auto h = parse({"run", "--help"});
  EXPECT_EQ(h.exit_code, 0);
  EXPECT_NE(h.message.find("--kernel"), std::string::npos);
}

TEST(Cli, FullRunCommandLine) {
  auto r = parse({"run", "--kernel", SHOAL_TEST_GUEST, "--cmdline", "counter 5", "--memory", "2G",
                  "--vcpus", "4", "--serial", "/tmp/x", "--log-level", "debug"});
  ASSERT_TRUE(r.run.has_value()) << r.message;
  EXPECT_EQ(r.run->memory, 2 * GiB);
  EXPECT_EQ(r.run->vcpus, 4);
  EXPECT_EQ(r.run->cmdline, "counter 5");
  EXPECT_EQ(r.run->serial, "/tmp/x");
  EXPECT_EQ(r.run->log_level, "debug");
  EXPECT_TRUE(r.run->initrd.empty());
}

TEST(Cli, PodValidate) {
  auto r = parse({"pod", "validate", "spec.yaml"});
  ASSERT_TRUE(r.validate_pod_spec.has_value()) << r.message;
  EXPECT_EQ(*r.validate_pod_spec, "spec.yaml");
  EXPECT_FALSE(r.run.has_value());
  expect_usage_error({"pod"}, "subcommand");
  auto ping = parse({"pod", "ping", "spec.yaml", "--count", "5"});
  ASSERT_TRUE(ping.pod_ping.has_value()) << ping.message;
  EXPECT_EQ(ping.pod_ping->count, 5);
  auto node = parse({"node", "--listen", "127.0.0.1:7100", "--secret-file", "/s"});
  ASSERT_TRUE(node.node.has_value()) << node.message;
  EXPECT_EQ(node.node->name, "127.0.0.1:7100");
  EXPECT_EQ(node.node->log_level, "info");
  auto tracing =
      parse({"node", "--listen", "127.0.0.1:7100", "--secret-file", "/s", "--log-level", "trace"});
  ASSERT_TRUE(tracing.node.has_value()) << tracing.message;
  EXPECT_EQ(tracing.node->log_level, "trace");
  expect_usage_error({"node", "--listen", "127.0.0.1:7100"}, "--secret-file");
  expect_usage_error(
      {"node", "--listen", "127.0.0.1:7100", "--secret-file", "/s", "--log-level", "loud"},
      "--log-level");
  expect_usage_error({"pod", "validate"}, "SPEC");
}

TEST(Cli, VirtioDevicesAndWhatCannotGoWithThem) {
  const char* k = SHOAL_TEST_GUEST;
  auto ok =
      parse({"run", "--kernel", k, "--disk", "a.img", "--disk", "b.img,ro", "--channel", "c"});
  ASSERT_TRUE(ok.run.has_value()) << ok.message;
  EXPECT_EQ(ok.run->disks.size(), 2u);
  EXPECT_TRUE(ok.run->disks[1].read_only);
  EXPECT_EQ(ok.run->channel, "c");
  expect_usage_error({"run", "--kernel", k, "--disk", "a.img,rw"}, "--disk a.img: unknown option");
  expect_usage_error({"run",    "--kernel", k,        "--disk", "1",      "--disk",    "2",
                      "--disk", "3",        "--disk", "4",      "--disk", "5",         "--disk",
                      "6",      "--disk",   "7",      "--disk", "8",      "--channel", "c"},
                     "8 disks, 0 nets and a --channel: at most 8 virtio devices");
  auto net =
      parse({"run", "--kernel", k, "--net", "tap=t0", "--net", "tap=t1,mac=02:00:00:00:00:01"});
  ASSERT_TRUE(net.run.has_value()) << net.message;
  ASSERT_EQ(net.run->nets.size(), 2u);
  EXPECT_EQ(net.run->nets[0].tap, "t0");
  EXPECT_FALSE(net.run->nets[0].mac_given);
  EXPECT_EQ(net.run->nets[1].mac[0], 0x02);
  EXPECT_EQ(net.run->nets[1].mac[5], 0x01);
  expect_usage_error({"run", "--kernel", k, "--net", "t0"},
                     "--net: 't0' in 't0': expected tap=NAME");
  expect_usage_error({"run", "--kernel", k, "--net", "tap=t0,mac=01:00:00:00:00:01"},
                     "--net: mac=01:00:00:00:00:01 is a multicast address");
  expect_usage_error({"run", "--kernel", k, "--net", "tap=t0,mac=52:54:00:12:34"},
                     "is not six hex bytes");
  expect_usage_error({"run", "--kernel", k, "--net", "tap=t0", "--replica", "/tmp/r"},
                     "--net: not with --replica yet");
  expect_usage_error({"run", "--kernel", k, "--channel", "c", "--replica", "/tmp/r"},
                     "--channel: not with --replica yet");
  expect_usage_error({"run", "--disk", "a.img", "--restore", "/nonexistent/snap"},
                     "--disk: not with --restore yet");
}

TEST(Cli, UsageErrorsNameTheProblem) {
  expect_usage_error({"run"}, "--kernel");
  expect_usage_error({}, "subcommand");
  expect_usage_error({"run", "--kernel", "/nonexistent/bzImage"}, "/nonexistent/bzImage");
  expect_usage_error({"run", "--kernel", SHOAL_TEST_GUEST, "--memory", "0"}, "--memory 0");
  expect_usage_error({"run", "--kernel", SHOAL_TEST_GUEST, "--memory", "12Q"}, "suffix 'Q'");
  expect_usage_error({"run", "--kernel", SHOAL_TEST_GUEST, "--memory", "4194305B"}, "4 KiB");
  expect_usage_error({"run", "--kernel", SHOAL_TEST_GUEST, "--vcpus", "0"}, "--vcpus 0");
  expect_usage_error({"run", "--kernel", SHOAL_TEST_GUEST, "--vcpus", "two"}, "--vcpus");
  expect_usage_error({"run", "--kernel", SHOAL_TEST_GUEST, "--log-level", "loud"}, "loud");
  expect_usage_error({"run", "--kernel", SHOAL_TEST_GUEST, "--initrd", "/nonexistent/initrd"},
                     "--initrd");
  expect_usage_error({"run", "--kernel", SHOAL_TEST_GUEST, "--bogus"}, "--bogus");
}

}  // namespace
}  // namespace shoal
