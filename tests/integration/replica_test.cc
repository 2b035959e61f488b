// Fast restart from a storage replica (--replica): a guest writing and checking 1 GiB
// (touch-random) is killed with SIGKILL mid-run, and `shoal run --restore DIR` goes on from the
// last checkpoint and finishes with the checksums an uninterrupted run gives. With 1 and 4
// vCPUs. If the guest was done before the kill (a slow machine), the attempt is repeated
// sooner, up to three times.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "support/guest_results.hpp"
#include "support/kvm_available.hpp"
#include "support/process.hpp"

namespace shoal::test {
namespace {

using Clock = std::chrono::system_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// The pid of the process whose command line contains `needle` (and is not this one).
pid_t find_process(const std::string& needle) {
  DIR* d = opendir("/proc");
  if (d == nullptr) return -1;
  pid_t found = -1;
  while (dirent* e = readdir(d)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0 || pid == getpid()) continue;
    std::string cmdline = slurp("/proc/" + std::string(e->d_name) + "/cmdline");
    for (char& c : cmdline)
      if (c == '\0') c = ' ';
    if (cmdline.find(needle) != std::string::npos && cmdline.find(" run ") != std::string::npos) {
      found = pid;
      break;
    }
  }
  closedir(d);
  return found;
}

class Replica : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { SHOAL_REQUIRE_KVM(); }
  void TearDown() override {
    for (const char* f : {"/memory.img", "/state.snap", "/journal", "/journal.partial"})
      ::unlink((dir() + f).c_str());
    ::rmdir(dir().c_str());
    ::unlink(file("a").c_str());
    ::unlink(file("b").c_str());
  }
  std::string file(const std::string& what) const {
    return ::testing::TempDir() + "/shoal-replica-" + std::to_string(getpid()) + "-" + what;
  }
  std::string dir() const { return file("dir"); }
};

TEST_P(Replica, AGuestKilledMidRunGoesOnFromItsLastCheckpoint) {
  constexpr int kIntervalMs = 100;
  const std::string expected =
      "touch-random mib=1024 pages=262144 checksum=" + hex64(expected_touch_checksum(1024)) +
      " bad=0";
  for (int attempt = 0; attempt < 3; ++attempt) {
    TearDown();
    ProcessResult source;
    std::thread runner([&] {
      source = run_process({SHOAL_BINARY, "run", "--kernel", SHOAL_TEST_GUEST, "--memory", "2G",
                            "--vcpus", std::to_string(GetParam()), "--cmdline", "touch-random 1024",
                            "--serial", file("a"), "--replica", dir(), "--replica-interval",
                            std::to_string(kIntervalMs), "--log-level", "warn"},
                           seconds(120));
    });
    // Once the first checkpoint is in, a little later: the guest is writing its pages.
    struct stat st {};
    for (int i = 0; i < 3000 && ::stat((dir() + "/state.snap").c_str(), &st) != 0; ++i)
      std::this_thread::sleep_for(milliseconds(2));
    std::this_thread::sleep_for(milliseconds(250 >> attempt));
    const pid_t pid = find_process(dir());
    if (pid > 0) ::kill(pid, SIGKILL);
    const auto killed_at = Clock::now();
    runner.join();
    if (pid <= 0 || slurp(file("a")).find("result ok") != std::string::npos) continue;  // done
    ASSERT_EQ(source.exit_code, -1) << "not killed: " << source.err;
    // At most one interval back: the last checkpoint was committed shortly before the kill
    // (an interval, plus the time a checkpoint takes to write; generously bounded).
    ASSERT_EQ(::stat((dir() + "/state.snap").c_str(), &st), 0);
    const auto committed =
        Clock::from_time_t(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec);
    EXPECT_LT(killed_at - committed, milliseconds(kIntervalMs + 2000));

    ProcessResult restored = run_process(
        {SHOAL_BINARY, "run", "--restore", dir(), "--serial", file("b"), "--log-level", "warn"},
        seconds(120));
    EXPECT_EQ(restored.exit_code, 0) << restored.err;
    EXPECT_NE(slurp(file("b")).find(expected), std::string::npos)
        << slurp(file("b")) << restored.err;
    return;
  }
  FAIL() << "the guest finished before each of three kills";
}

TEST_P(Replica, ADirectoryHoldingAReplicaIsNotOverwritten) {
  if (GetParam() != 1) GTEST_SKIP() << "skipped: does not depend on the vCPUs";
  ASSERT_EQ(::mkdir(dir().c_str(), 0700), 0);
  std::ofstream(dir() + "/state.snap") << "x";
  ProcessResult r = run_process({SHOAL_BINARY, "run", "--kernel", SHOAL_TEST_GUEST, "--cmdline",
                                 "hello", "--replica", dir(), "--serial", file("a")},
                                seconds(60));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("holds a replica already"), std::string::npos) << r.err;
  EXPECT_EQ(slurp(dir() + "/state.snap"), "x");
}

INSTANTIATE_TEST_SUITE_P(Vcpus, Replica, ::testing::Values(1, 4),
                         [](const auto& info) { return std::to_string(info.param) + "vcpus"; });

}  // namespace
}  // namespace shoal::test
