// Dormant guest memory end to end: the test guest on real /dev/kvm with its RAM served by
// userfaultfd from the zero pool, and the comparison modes.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <regex>

#include "support/kvm_available.hpp"
#include "support/process.hpp"
#include "support/sanitized.hpp"

namespace shoal::test {
namespace {

using std::chrono::seconds;

ProcessResult shoal_run(const std::string& workload, std::vector<std::string> extra,
                        const std::string& memory = "512M", int vcpus = 1) {
  std::vector<std::string> argv = {SHOAL_BINARY, "run",    "--kernel",    SHOAL_TEST_GUEST,
                                   "--memory",   memory,   "--vcpus",     std::to_string(vcpus),
                                   "--cmdline",  workload, "--log-level", "warn"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return run_process(argv, seconds(120));
}

uint64_t stat_value(const std::string& err, const std::string& name) {
  std::smatch m;
  if (!std::regex_search(err, m, std::regex(name + ": ([0-9]+)"))) return ~uint64_t{0};
  return std::stoull(m[1]);
}

class DormantMemory : public ::testing::Test {
 protected:
  void SetUp() override { SHOAL_REQUIRE_KVM(); }
};

TEST_F(DormantMemory, EveryServingModeReadsBackWhatWasWritten) {
  for (const std::string mode : {"batch", "single-move", "single-copy", "kernel"}) {
    auto r = shoal_run("touch 16", {"--fault-serving", mode});
    EXPECT_EQ(r.exit_code, 0) << mode << "\n" << r.out << r.err;
    EXPECT_NE(r.out.find("pages=4096 checksum=0x988d71385e60a800 bad=0"), std::string::npos)
        << mode << "\n"
        << r.out;
  }
  auto r = shoal_run("touch 16", {"--prefault"});
  EXPECT_NE(r.out.find("bad=0"), std::string::npos) << r.out << r.err;
}

TEST_F(DormantMemory, FourVcpusFaultingTheSamePages) {
  auto r = shoal_run("touch-shared 64", {"--stats"}, "512M", 4);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("touch-shared mib=64 vcpus=4 bad=0"), std::string::npos) << r.out;
  // The same pages fault on several vCPUs at once; each is served once.
  EXPECT_EQ(stat_value(r.err, "guest pages present"), stat_value(r.err, "pages served")) << r.err;
}

TEST_F(DormantMemory, FourVcpusFaultingInterleavedPagesOneByOne) {
  auto r = shoal_run("touch 32", {"--fault-serving", "single-move"}, "512M", 4);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("pages=8192 checksum=0xea9a2cecd1c15000 bad=0"), std::string::npos) << r.out;
}

TEST_F(DormantMemory, DiscardThenRefaultGivesZeroedPages) {
  for (const std::string mode : {"batch", "single-copy"}) {
    auto r = shoal_run("discard 32", {"--fault-serving", mode, "--stats"});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("discard mib=32 nonzero-after-discard=0 bad=0"), std::string::npos)
        << mode << "\n"
        << r.out;
    // With the pool (MOVE), discarded pages go back into it to be re-zeroed and reused.
    if (mode == "batch") {
      EXPECT_GT(stat_value(r.err, "pages recycled"), 0u) << r.err;
    }
  }
}

TEST_F(DormantMemory, PoolRefillsWhileTheGuestRuns) {
  // An 8 MiB pool (4 chunks) serving 128 MiB: it must be refilled many times mid-run.
  auto r = shoal_run("touch 128", {"--zero-pool", "8M", "--stats"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("bad=0"), std::string::npos);
  // 128 MiB is 64 chunks: most of them come through refills; what a burst takes while the
  // pool is empty is copied instead of waited for (pages copied while it was empty), so the
  // refills alone no longer add up to 64.
  EXPECT_GT(stat_value(r.err, "pool refills"), 32u) << r.err;
}

TEST_F(DormantMemory, BudgetSmallerThanTheTouchSetFailsWithTheNamedError) {
  for (const std::string mode : {"batch", "single-copy"}) {
    auto r = shoal_run("touch 128", {"--memory-budget", "64M", "--fault-serving", mode});
    EXPECT_EQ(r.exit_code, 1) << mode << "\n" << r.out << r.err;
    EXPECT_NE(r.err.find("memory budget of 64 MiB exhausted"), std::string::npos) << r.err;
    // The fault path names the page source that could not serve (memory/page_source.hpp).
    EXPECT_NE(r.err.find("from the zero pool"), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("result ok"), std::string::npos);
  }
}

TEST_F(DormantMemory, OneTebibyteGuestOnThisHost) {
  auto r = shoal_run("touch 256", {"--stats"}, "1T");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("touch mib=256 pages=65536"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("bad=0"), std::string::npos) << r.out;
  // Peak RSS under what was touched + the zero pool (64 MiB) + 100 MiB. AddressSanitizer's
  // shadow, allocator and quarantine add 80-100 MiB of their own here (408-425 MiB measured).
  const long limit_kb = (256 + 64 + 100 + (kSanitized ? 128 : 0)) * 1024;
  EXPECT_LT(r.max_rss_kb, limit_kb) << "peak RSS " << r.max_rss_kb << " KiB";
  std::printf("1 TiB guest, 256 MiB touched: peak RSS %ld MiB\n", r.max_rss_kb / 1024);
}

}  // namespace
}  // namespace shoal::test

namespace shoal::test {
namespace {

// A user without userfaultfd rights: a user namespace (no CAP_SYS_PTRACE in the initial one)
// where /dev/userfaultfd is /dev/null. Runs where that can be set up and the sysctl does not
// allow everyone anyway.
TEST(UserfaultfdPermission, DeniedNamesTheSysctlAndTheDevice) {
  SHOAL_REQUIRE_KVM();
  if (access("/usr/bin/unshare", X_OK) != 0) GTEST_SKIP() << "skipped: needs unshare(1)";
  FILE* f = std::fopen("/proc/sys/vm/unprivileged_userfaultfd", "r");
  int allowed = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "%d", &allowed) != 1) allowed = 0;
    std::fclose(f);
  }
  if (allowed == 1) GTEST_SKIP() << "skipped: vm.unprivileged_userfaultfd=1 allows every user";
  const std::string cmd = std::string("mount --bind /dev/null /dev/userfaultfd && exec ") +
                          SHOAL_BINARY + " run --kernel " + SHOAL_TEST_GUEST +
                          " --memory 64M --cmdline hello --log-level warn";
  auto r =
      run_process({"/usr/bin/unshare", "-r", "-m", "/bin/sh", "-c", cmd}, std::chrono::seconds(60));
  if (r.err.find("unshare:") != std::string::npos || r.err.find("mount:") != std::string::npos)
    GTEST_SKIP() << "skipped: cannot make a user namespace here: " << r.err;
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("shoal: error: userfaultfd: Operation not permitted"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("vm.unprivileged_userfaultfd=1"), std::string::npos);
  EXPECT_NE(r.err.find("/dev/userfaultfd"), std::string::npos);
}

}  // namespace
}  // namespace shoal::test
