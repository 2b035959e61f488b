#include "pod/pod_spec.hpp"

#include <gtest/gtest.h>

#include "shoal/size.hpp"

namespace shoal {
namespace {

const std::string kGood = R"(apiVersion: shoal/v1
kind: Pod
metadata:
  name: demo
spec:
  guest:
    kernel: /srv/guest.elf
    cmdline: "counter 5"
  memory: 1G
  vcpus: 4
  transport: tcp
  secretFile: /etc/shoal/demo.secret
  hosts:
    - name: a
      address: "10.0.0.1:7000"
      vcpus: [0, 1]
      memory: even
    - name: b
      address: "10.0.0.2:7000"
      vcpus: "2-3"
)";

// kGood with `from` replaced by `to` (which must occur).
std::string edit(const std::string& from, const std::string& to) {
  std::string s = kGood;
  const auto at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

void expect_error(const std::string& yaml, const std::string& path, const std::string& problem) {
  auto r = parse_pod_spec(yaml);
  EXPECT_FALSE(r.spec.has_value());
  bool found = false;
  for (const auto& e : r.errors)
    if (e.rfind(path, 0) == 0 && e.find(problem) != std::string::npos) found = true;
  std::string all;
  for (const auto& e : r.errors) all += "\n  " + e;
  EXPECT_TRUE(found) << "wanted '" << path << ": ..." << problem << "' in:" << all;
}

TEST(PodSpec, RdmaTakesIPv4HostsAnOptionalDeviceAndTheSealedChoice) {
  std::string rdma = edit("  transport: tcp", "  transport: rdma\n  rdmaSealed: false");
  rdma.replace(rdma.find("      memory: even\n"), 19,
               "      memory: even\n      rdmaDevice: mlx5_0\n");
  auto r = parse_pod_spec(rdma);
  ASSERT_TRUE(r.spec.has_value()) << (r.errors.empty() ? "" : r.errors[0]);
  EXPECT_EQ(r.spec->transport, PodTransport::kRdma);
  EXPECT_FALSE(r.spec->rdma_sealed);
  EXPECT_EQ(r.spec->hosts[0].rdma_device, "mlx5_0");
  EXPECT_EQ(r.spec->hosts[1].rdma_device, "");
  auto sealed = parse_pod_spec(edit("  transport: tcp", "  transport: rdma"));
  ASSERT_TRUE(sealed.spec.has_value());
  EXPECT_TRUE(sealed.spec->rdma_sealed);
  std::string named = rdma;
  named.replace(named.find("10.0.0.2"), 8, "node-b.example");
  expect_error(named, "spec.hosts[1].address", "transport rdma needs an IPv4 address");
  std::string bad_device = rdma;
  bad_device.replace(bad_device.find("mlx5_0"), 6, "mlx5/0");
  expect_error(bad_device, "spec.hosts[0].rdmaDevice", "expected a verbs device name");
}

TEST(PodSpec, GoodSpecResolvesHostsVcpusAndAnEvenSplit) {
  auto r = parse_pod_spec(kGood);
  ASSERT_TRUE(r.spec.has_value()) << (r.errors.empty() ? "" : r.errors[0]);
  const PodSpec& s = *r.spec;
  EXPECT_EQ(s.name, "demo");
  EXPECT_EQ(s.memory, GiB);
  ASSERT_EQ(s.hosts.size(), 2u);
  EXPECT_EQ(s.hosts[1].host, "10.0.0.2");
  EXPECT_EQ(s.hosts[1].port, 7000);
  EXPECT_EQ(s.hosts[1].vcpus, (std::vector<int>{2, 3}));
  ASSERT_EQ(s.hosts[0].home.size(), 1u);
  EXPECT_EQ(s.hosts[0].home[0].start, 0u);
  EXPECT_EQ(s.hosts[0].home[0].size, 512 * MiB);
  EXPECT_EQ(s.hosts[1].home[0].start, 512 * MiB);
  EXPECT_EQ(s.hosts[0].zero_pool_bytes, 64 * MiB);
  EXPECT_EQ(s.hosts[0].memory_budget_bytes, 0u);  // the host's physical memory
}

TEST(PodSpec, MemoryBudgetPerHost) {
  const std::string even = "      memory: even\n";
  auto r = parse_pod_spec(edit(even, even + "      memoryBudget: 2G\n"));
  ASSERT_TRUE(r.spec.has_value()) << (r.errors.empty() ? "" : r.errors[0]);
  EXPECT_EQ(r.spec->hosts[0].memory_budget_bytes, 2 * GiB);
  expect_error(edit(even, even + "      memoryBudget: 65M\n"), "spec.hosts[0].memoryBudget",
               "must hold the zero pool and at least 2 MiB");
  expect_error(edit(even, even + "      memoryBudget: lots\n"), "spec.hosts[0].memoryBudget", "");
}

TEST(PodSpec, MaxVcpusPerHost) {
  auto good = parse_pod_spec(kGood);
  ASSERT_TRUE(good.spec.has_value());
  EXPECT_EQ(good.spec->hosts[0].max_vcpus, 3);  // the default: its two vCPUs + 1
  EXPECT_EQ(good.spec->hosts[1].max_vcpus, 3);
  const std::string even = "      memory: even\n";
  auto r = parse_pod_spec(edit(even, even + "      maxVcpus: 4\n"));
  ASSERT_TRUE(r.spec.has_value()) << (r.errors.empty() ? "" : r.errors[0]);
  EXPECT_EQ(r.spec->hosts[0].max_vcpus, 4);
  expect_error(edit(even, even + "      maxVcpus: 1\n"), "spec.hosts[0].maxVcpus",
               "expected 2 (this host's vcpus) to 254, got 1");
  expect_error(edit(even, even + "      maxVcpus: 255\n"), "spec.hosts[0].maxVcpus",
               "expected 2 (this host's vcpus) to 254, got 255");
  expect_error(edit(even, even + "      maxVcpus: many\n"), "spec.hosts[0].maxVcpus",
               "expected an integer");
}

TEST(PodSpec, FailureTimeout) {
  EXPECT_EQ(parse_pod_spec(kGood).spec->failure_timeout_ms, 1000u);  // the default
  const std::string tcp = "  transport: tcp\n";
  for (auto [text, ms] : {std::pair{"2s", 2000}, {"500ms", 500}, {"1.5s", 1500}, {"60s", 60000}}) {
    auto r = parse_pod_spec(edit(tcp, tcp + "  failureTimeout: " + text + "\n"));
    ASSERT_TRUE(r.spec.has_value()) << text << ": " << (r.errors.empty() ? "" : r.errors[0]);
    EXPECT_EQ(r.spec->failure_timeout_ms, static_cast<uint64_t>(ms)) << text;
  }
  for (const char* bad : {"400ms", "61s", "0s"})
    expect_error(edit(tcp, tcp + "  failureTimeout: " + bad + "\n"), "spec.failureTimeout",
                 "expected 500ms to 60s");
  for (const char* bad : {"1", "soon", "-1s", "1h", "[1]"})
    expect_error(edit(tcp, tcp + "  failureTimeout: " + bad + "\n"), "spec.failureTimeout",
                 "expected a duration such as 1s or 500ms");
}

TEST(PodSpec, PageHold) {
  EXPECT_EQ(parse_pod_spec(kGood).spec->page_hold_us, 200u);  // the default
  const std::string tcp = "  transport: tcp\n";
  for (auto [text, us] : {std::pair{"50us", 50}, {"5ms", 5000}, {"0.5ms", 500}, {"1s", 1000000}}) {
    auto r = parse_pod_spec(edit(tcp, tcp + "  pageHold: " + text + "\n"));
    ASSERT_TRUE(r.spec.has_value()) << text << ": " << (r.errors.empty() ? "" : r.errors[0]);
    EXPECT_EQ(r.spec->page_hold_us, static_cast<uint64_t>(us)) << text;
  }
  for (const char* bad : {"10us", "2s", "0ms"})
    expect_error(edit(tcp, tcp + "  pageHold: " + bad + "\n"), "spec.pageHold",
                 "expected 20us to 1s");
  for (const char* bad : {"200", "us", "1.5", "-5ms", "1min", "{a: 1}"})
    expect_error(edit(tcp, tcp + "  pageHold: " + bad + "\n"), "spec.pageHold",
                 "expected a duration such as 200us, 5ms or 1s");
}

TEST(PodSpec, Placement) {
  EXPECT_EQ(parse_pod_spec(kGood).spec->placement, PodPlacement::kAuto);  // the default
  const std::string tcp = "  transport: tcp\n";
  auto a = parse_pod_spec(edit(tcp, tcp + "  placement: auto\n"));
  ASSERT_TRUE(a.spec.has_value());
  EXPECT_EQ(a.spec->placement, PodPlacement::kAuto);
  EXPECT_EQ(parse_pod_spec(edit(tcp, tcp + "  placement: static\n")).spec->placement,
            PodPlacement::kStatic);
  expect_error(edit(tcp, tcp + "  placement: smart\n"), "spec.placement",
               "expected static or auto, got 'smart'");
}

TEST(PodSpec, Disks) {
  EXPECT_TRUE(parse_pod_spec(kGood).spec->disks.empty());
  const std::string tcp = "  transport: tcp\n";
  auto d = parse_pod_spec(edit(tcp, tcp + "  disks: [/srv/a.img, \"/srv/b.img,ro\"]\n"));
  ASSERT_TRUE(d.spec.has_value());
  ASSERT_EQ(d.spec->disks.size(), 2u);
  EXPECT_EQ(d.spec->disks[0].path, "/srv/a.img");
  EXPECT_FALSE(d.spec->disks[0].read_only);
  EXPECT_TRUE(d.spec->disks[1].read_only);
  expect_error(edit(tcp, tcp + "  disks: [\"/srv/a.img,rw\"]\n"), "spec.disks[0]",
               "--disk /srv/a.img: unknown option 'rw' (expected PATH[,ro])");
  expect_error(edit(tcp, tcp + "  disks: /srv/a.img\n"), "spec.disks", "expected a list");
  expect_error(edit(tcp, tcp + "  disks: [[a]]\n"), "spec.disks[0]", "expected PATH[,ro]");
  expect_error(edit(tcp, tcp + "  disks: [a, b, c, d, e, f, g, h, i]\n"), "spec.disks",
               "at most 8");
}

TEST(PodSpec, NetsAndTheChannel) {
  const std::string tcp = "  transport: tcp\n";
  auto d = parse_pod_spec(edit(tcp, tcp + "  nets: [\"tap=t0\", \"tap=t1,mac=52:54:00:00:00:07\"]\n"
                                          "  channel: /run/shoal/demo.sock\n"));
  ASSERT_TRUE(d.spec.has_value()) << d.errors.front();
  ASSERT_EQ(d.spec->nets.size(), 2u);
  EXPECT_EQ(d.spec->nets[0].tap, "t0");
  EXPECT_FALSE(d.spec->nets[0].mac_given);
  EXPECT_EQ(d.spec->nets[1].tap, "t1");
  EXPECT_TRUE(d.spec->nets[1].mac_given);
  EXPECT_EQ(d.spec->nets[1].mac[5], 7);
  EXPECT_EQ(d.spec->channel, "/run/shoal/demo.sock");
  EXPECT_TRUE(parse_pod_spec(kGood).spec->nets.empty());
  EXPECT_TRUE(parse_pod_spec(kGood).spec->channel.empty());
  expect_error(edit(tcp, tcp + "  nets: [\"tap=t0,speed=10\"]\n"), "spec.nets[0]",
               "--net: 'speed=10' in 'tap=t0,speed=10'");
  expect_error(edit(tcp, tcp + "  nets: [\"mac=52:54:00:00:00:07\"]\n"), "spec.nets[0]",
               "--net: no tap=");
  expect_error(edit(tcp, tcp + "  nets: tap=t0\n"), "spec.nets",
               "expected a list of at most 8 tap=NAME[,mac=MAC]");
  expect_error(edit(tcp, tcp + "  channel: [a]\n"), "spec.channel", "expected a string");
  expect_error(edit(tcp, tcp + "  channel: \"" + std::string(108, 'x') + "\"\n"), "spec.channel",
               "expected a socket path of 1 to 107 bytes, got 108");
  // Eight virtio-mmio slots for all of them together.
  expect_error(edit(tcp, tcp + "  disks: [a, b, c, d, e]\n  nets: [tap=a, tap=b, tap=c]\n"
                               "  channel: /run/c.sock\n"),
               "spec", "5 disks, 3 nets and a channel: at most 8 virtio devices");
}

TEST(PodSpec, ExplicitRangesAreKept) {
  auto r = parse_pod_spec(edit("      memory: even\n", "      memory: [{start: 0, size: 256M}]\n") +
                          "      memory: [{start: 256M, size: 768M}]\n");
  ASSERT_TRUE(r.spec.has_value()) << (r.errors.empty() ? "" : r.errors[0]);
  EXPECT_EQ(r.spec->hosts[1].home[0].start, 256 * MiB);
}

TEST(PodSpec, EachKindOfMistakeNamesItsField) {
  expect_error(edit("apiVersion: shoal/v1", "apiVersion: shoal/v2"), "apiVersion",
               "expected 'shoal/v1'");
  expect_error(edit("kind: Pod", "kind: Deployment"), "kind", "expected 'Pod'");
  expect_error(edit("  name: demo\n", ""), "metadata.name", "required field is missing");
  expect_error(edit("  name: demo", "  name: Demo_1"), "metadata.name", "lower-case");
  expect_error(edit("    kernel: /srv/guest.elf\n", ""), "spec.guest.kernel", "required");
  expect_error(edit("  vcpus: 4", "  vcpus: four"), "spec.vcpus",
               "expected an integer, got 'four'");
  expect_error(edit("  vcpus: 4", "  vcpus: [1, 2]"), "spec.vcpus",
               "expected an integer, got a list");
  expect_error(edit("  memory: 1G", "  memory: 12Q"), "spec.memory", "unknown size suffix 'Q'");
  expect_error(edit("  memory: 1G", "  memory: 3M"), "spec.memory", "multiple of 2 MiB");
  expect_error(edit("      address: \"10.0.0.2:7000\"", "      address: \"10.0.0.2\""),
               "spec.hosts[1].address", "expected HOST:PORT, got '10.0.0.2'");
  expect_error(edit("      address: \"10.0.0.2:7000\"", "      address: \"10.0.0.2:99999\""),
               "spec.hosts[1].address", "expected HOST:PORT");
  expect_error(edit("      vcpus: \"2-3\"", "      vcpus: \"1-3\""), "spec.hosts[1].vcpus",
               "vCPU 1 is also on spec.hosts[0]");
  expect_error(edit("      vcpus: \"2-3\"", "      vcpus: \"2\""), "spec.hosts",
               "vCPU 3 is on no host");
  expect_error(edit("      vcpus: \"2-3\"", "      vcpus: \"2-9\""), "spec.hosts[1].vcpus",
               "outside 0..3");
  expect_error(edit("    - name: b", "    - name: a"), "spec.hosts[1].name",
               "'a' is also spec.hosts[0]");
  expect_error(edit("  transport: tcp", "  transport: carrier-pigeon"), "spec.transport",
               "expected tcp or rdma");
  expect_error(edit("  transport: tcp", "  transport: tcp\n  rdmaSealed: false"), "spec.rdmaSealed",
               "applies to transport: rdma only");
  expect_error(edit("  transport: tcp", "  transport: rdma\n  rdmaSealed: maybe"),
               "spec.rdmaSealed", "expected true or false, got 'maybe'");
  expect_error(edit("      memory: even\n", "      memory: even\n      rdmaDevice: rxe0\n"),
               "spec.hosts[0].rdmaDevice", "applies to transport: rdma only");
  expect_error(edit("  secretFile: /etc/shoal/demo.secret\n", ""), "spec.secretFile", "required");
  expect_error(edit("  vcpus: 4\n", "  vcpus: 4\n  cpus: 4\n"), "spec.cpus", "unknown field");
  expect_error(edit("      memory: even", "      memry: even"), "spec.hosts[0].memry",
               "unknown field");
  expect_error(edit("  hosts:\n", "  hosts: []\n  oldhosts:\n"), "spec.hosts", "non-empty list");
  {
    std::string many = "  hosts:\n";
    for (int i = 0; i < 33; ++i)
      many += "    - {name: h" + std::to_string(i) + ", address: \"10.0.1." + std::to_string(i) +
              ":7000\", vcpus: \"" + std::to_string(i % 4) + "\"}\n";
    expect_error(kGood.substr(0, kGood.find("  hosts:\n")) + many, "spec.hosts",
                 "33 hosts; a pod has at most 32");
  }
  expect_error("spec: [1, 2", "line", "not valid YAML");
  expect_error("- just\n- a list\n", "(document)", "expected a mapping, got a list");
}

TEST(PodSpec, OverlappingAndMissingHomes) {
  expect_error(edit("      memory: even\n", "      memory: [{start: 0, size: 512M}]\n") +
                   "      memory: [{start: 256M, size: 768M}]\n",
               "spec.hosts[1].memory[0]", "overlaps spec.hosts[0].memory[0]");
  expect_error(edit("      memory: even\n", "      memory: [{start: 0, size: 256M}]\n") +
                   "      memory: [{start: 512M, size: 512M}]\n",
               "spec.hosts", "[256 MiB, 512 MiB) has no home host");
  expect_error(edit("      memory: even\n", "      memory: [{start: 0, size: 2G}]\n") +
                   "      memory: even\n",
               "spec.hosts[1].memory", "explicit ranges");
  expect_error(edit("      memory: even\n", "      memory: [{start: 1M, size: 2M}]\n"),
               "spec.hosts[0].memory[0]", "multiples of 2 MiB");
}

TEST(PodSpec, ReportsEveryProblemAtOnceWithLines) {
  auto r = parse_pod_spec(edit("  vcpus: 4", "  vcpus: x") + "  extra: 1\n");
  EXPECT_FALSE(r.spec.has_value());
  EXPECT_GE(r.errors.size(), 2u);  // spec.vcpus and spec.extra, not just the first
  bool line = false;
  for (const auto& e : r.errors) line |= e.find("spec.vcpus (line 10)") != std::string::npos;
  EXPECT_TRUE(line) << r.errors[0];
}

TEST(PodSpec, ExamplesInConfigsAreValid) {
  for (const char* f :
       {"pod-2hosts.yaml", "pod-3hosts-ranges.yaml", "pod-netns-3hosts.yaml", "pod-devices.yaml"}) {
    auto r = load_pod_spec(std::string(SHOAL_SOURCE_DIR) + "/configs/" + f);
    EXPECT_TRUE(r.spec.has_value()) << f << ": " << (r.errors.empty() ? "" : r.errors[0]);
  }
}

TEST(PodSpec, OversizedSpecIsRefused) {
  auto r = parse_pod_spec(std::string(kPodSpecMaxBytes + 1, '#'));
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("at most"), std::string::npos);
}

}  // namespace
}  // namespace shoal
