// Snapshot and restore across processes, on real /dev/kvm: a guest running under one shoal is
// snapshotted through its control API (`shoal ctl ... snapshot`), that shoal quits, and a new
// shoal started with `--restore` finishes the workload with the uninterrupted result. With 1
// and 4 vCPUs. The snapshot is taken while the workload runs; if the guest was done first (a
// slow machine), the attempt is repeated sooner, up to three times.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include "support/guest_results.hpp"
#include "support/kvm_available.hpp"
#include "support/process.hpp"

namespace shoal::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr size_t kBlockByte = 96 + 100;  // inside the first block, after the 96-byte header

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

ProcessResult ctl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {SHOAL_BINARY, "ctl"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, seconds(120));
}

class SnapshotRestore : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { SHOAL_REQUIRE_KVM(); }
  void TearDown() override {
    for (const char* f : {"sock", "snap", "a", "b"}) ::unlink(file(f).c_str());
  }
  std::string file(const std::string& what) const {
    return ::testing::TempDir() + "/shoal-snaptest-" + std::to_string(getpid()) + "-" + what;
  }

  struct Attempt {
    bool too_late = false;  // the guest finished before the snapshot
    std::string source_out, snapshot_reply, restored_out;
    ProcessResult restored;
  };

  // Runs `workload` under shoal with an API socket, snapshots it `after` the API answers (or
  // once its console shows `ready`), quits it, then restores the snapshot in a new shoal
  // (with `restore_args`).
  Attempt snapshot_and_restore(const std::string& workload, const std::string& memory,
                               milliseconds after, const std::vector<std::string>& restore_args,
                               const std::string& ready = "",
                               const std::vector<std::string>& snapshot_args = {}) {
    Attempt a;
    ProcessResult source;
    std::thread runner([&] {
      source =
          run_process({SHOAL_BINARY, "run", "--kernel", SHOAL_TEST_GUEST, "--memory", memory,
                       "--vcpus", std::to_string(GetParam()), "--cmdline", workload, "--serial",
                       file("a"), "--api-socket", file("sock"), "--log-level", "warn"},
                      seconds(120));
    });
    // The socket is bound before the guest starts; the API answers once its vCPUs run.
    bool answered = false;
    for (int i = 0; i < 2000 && !answered; ++i) {
      struct stat st {};
      if (::stat(file("sock").c_str(), &st) == 0)
        answered = ctl({file("sock"), "status"}).exit_code == 0;
      if (!answered) std::this_thread::sleep_for(milliseconds(5));
    }
    EXPECT_TRUE(answered) << "the control API never answered";
    std::this_thread::sleep_for(after);
    for (int i = 0; i < 6000 && !ready.empty() && slurp(file("a")).find(ready) == std::string::npos;
         ++i)
      std::this_thread::sleep_for(milliseconds(10));
    std::vector<std::string> snap_args = {file("sock"), "snapshot", file("snap"), "--stop"};
    snap_args.insert(snap_args.end(), snapshot_args.begin(), snapshot_args.end());
    ProcessResult snap = ctl(snap_args);
    a.snapshot_reply = snap.out + snap.err;
    a.too_late = snap.exit_code != 0 && snap.err.find("the guest has stopped") != std::string::npos;
    if (snap.exit_code == 0) EXPECT_EQ(ctl({file("sock"), "quit"}).exit_code, 0);
    runner.join();
    a.source_out = slurp(file("a"));
    if (a.too_late || snap.exit_code != 0) {
      EXPECT_TRUE(a.too_late) << "snapshot failed: " << a.snapshot_reply;
      return a;
    }
    EXPECT_EQ(source.exit_code, 0) << source.err;
    a.too_late = a.source_out.find("result ok") != std::string::npos;
    if (a.too_late) return a;
    std::vector<std::string> argv = {SHOAL_BINARY, "run",     "--restore",   file("snap"),
                                     "--serial",   file("b"), "--log-level", "warn"};
    argv.insert(argv.end(), restore_args.begin(), restore_args.end());
    a.restored = run_process(argv, seconds(120));
    a.restored_out = slurp(file("b"));
    return a;
  }
};

TEST_P(SnapshotRestore, ComputeSnapshottedMidRunFinishesWithTheUninterruptedResult) {
  constexpr uint64_t kSteps = 1'000'000'000;
  const std::string expected =
      "compute n=" + std::to_string(kSteps) + " result=" + hex64(expected_compute(kSteps));
  for (int attempt = 0; attempt < 3; ++attempt) {
    Attempt a = snapshot_and_restore("compute " + std::to_string(kSteps), "256M",
                                     milliseconds(400 >> attempt), {});
    if (HasFailure()) return;
    if (a.too_late) continue;
    EXPECT_NE(a.snapshot_reply.find("\"stored_pages\":"), std::string::npos) << a.snapshot_reply;
    EXPECT_EQ(a.restored.exit_code, 0) << a.restored.err;
    EXPECT_NE(a.restored_out.find(expected), std::string::npos) << a.restored_out << a.restored.err;
    EXPECT_NE(a.restored_out.find("result ok"), std::string::npos) << a.restored_out;
    return;
  }
  FAIL() << "the guest finished before each of three snapshots";
}

// touch-restore writes 256 MiB (every other page zero), waits for the restore counter, then
// reads every page back: no timing involved. Restored lazily, then eagerly.
TEST_P(SnapshotRestore, TouchedMemoryReadsBackAfterRestore) {
  constexpr uint64_t kMib = 256;
  uint64_t sum = 0;
  // Word 0 and word 511 of each odd page, splitmix64 of (page << 9) + word; even pages are zero.
  auto mix64 = [](uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  for (uint64_t p = 1; p < (kMib << 8); p += 2) sum += mix64(p << 9) + mix64((p << 9) + 511);
  const std::string expected = "touch-restore mib=256 restored checksum=" + hex64(sum);
  const std::string ready = "written, waiting for a restore";
  for (const char* mode : {"--stats", "--restore-eager"}) {
    SCOPED_TRACE(mode);
    Attempt a = snapshot_and_restore("touch-restore 256", "1G", milliseconds(0), {mode}, ready);
    ASSERT_FALSE(a.too_late) << a.source_out;
    EXPECT_NE(a.snapshot_reply.find("\"zero_pages\":"), std::string::npos) << a.snapshot_reply;
    EXPECT_EQ(a.restored.exit_code, 0) << a.restored.err;
    EXPECT_NE(a.restored_out.find(expected), std::string::npos) << a.restored_out << a.restored.err;
  }
}

// A working set recorded for 200 ms while touch-random writes 1 GiB: stored first, and the
// restored guest's checksums come out as an uninterrupted run's.
TEST_P(SnapshotRestore, AWorkingSetRecordedMidRunIsStoredFirstAndRestores) {
  const std::string expected =
      "touch-random mib=1024 pages=262144 checksum=" + hex64(expected_touch_checksum(1024)) +
      " bad=0";
  for (int attempt = 0; attempt < 3; ++attempt) {
    Attempt a = snapshot_and_restore("touch-random 1024", "2G", milliseconds(50 >> attempt),
                                     {"--stats"}, "", {"--working-set-ms", "200"});
    if (HasFailure()) return;
    if (a.too_late) continue;
    const size_t at = a.snapshot_reply.find("\"working_set_pages\":");
    ASSERT_NE(at, std::string::npos) << a.snapshot_reply;
    EXPECT_GT(std::atoll(a.snapshot_reply.c_str() + at + 20), 0) << a.snapshot_reply;
    EXPECT_EQ(a.restored.exit_code, 0) << a.restored.err;
    EXPECT_NE(a.restored_out.find(expected), std::string::npos) << a.restored_out << a.restored.err;
    return;
  }
  FAIL() << "the guest finished before each of three snapshots";
}

TEST_P(SnapshotRestore, DamagedSnapshotsStopWithOneLineNamingTheProblem) {
  if (GetParam() != 1) GTEST_SKIP() << "skipped: the file checks do not depend on the vCPUs";
  Attempt a = snapshot_and_restore("compute 1000000000", "256M", milliseconds(100), {});
  ASSERT_FALSE(a.too_late);
  std::ifstream in(file("snap"), std::ios::binary);
  std::vector<char> good((std::istreambuf_iterator<char>(in)), {});
  ASSERT_GT(good.size(), 200u);
  auto restore_error = [&](std::vector<char> bytes) {
    std::ofstream(file("snap"), std::ios::binary | std::ios::trunc)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ProcessResult r = run_process({SHOAL_BINARY, "run", "--restore", file("snap"), "--serial",
                                   file("b"), "--log-level", "off"},
                                  seconds(60));
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    return r.err;
  };
  EXPECT_NE(restore_error({good.begin(), good.begin() + 60}).find("snapshot header: truncated"),
            std::string::npos);
  EXPECT_NE(restore_error({good.begin(), good.end() - 1}).find("outside the file"),
            std::string::npos);
  std::vector<char> bad = good;
  bad[8] = 9;  // version
  EXPECT_NE(restore_error(bad).find("snapshot header: version 9, this build reads version 1"),
            std::string::npos);
  // A damaged block passes the checks made at start-up and stops the guest when it is read
  // (by the loader or on a fault, whichever comes first).
  bad = good;
  bad[kBlockByte] ^= 0x40;
  const std::string e = restore_error(bad);
  EXPECT_NE(e.find("snapshot block 0: CRC mismatch (corrupted)"), std::string::npos) << e;
}

INSTANTIATE_TEST_SUITE_P(Vcpus, SnapshotRestore, ::testing::Values(1, 4),
                         [](const auto& info) { return std::to_string(info.param) + "vcpus"; });

}  // namespace
}  // namespace shoal::test
