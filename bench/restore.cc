// Snapshot and restore of the test guest's `touch-restore 256` (256 MiB written, every other
// page zero), for guests of 1 GiB and 64 GiB and two workloads after the restore, in one run:
// "all 256 MiB" reads every page back; "working set 32 MiB" is `touch-restore 256 32`, which
// keeps writing its first 32 MiB until the restore and then reads back only those, snapshotted
// with --working-set-ms 500 (so the file holds them first and the loader brings them first):
// - the snapshot: its file size against the lz4-compressed size of the non-zero pages alone
//   (what the file cannot be smaller than), and the time to write it (the guest paused);
// - each way back: process start to "vCPUs started" (restore to first instruction), and
//   process start to exit, the workload's read-back included: shoal's lazy restore; (a) eager,
//   every block in before the guest runs; (b) kernel paging, a raw image of guest RAM mapped
//   MAP_PRIVATE (--restore-image, Cloud Hypervisor's on-demand restore), exported from the same
//   snapshot.
// The snapshot and the image are in the page cache (just written): a warm restore. With
// --cold, the page cache is dropped before every restore (needs root).
//   restore [--json] [--cold] [RUNS]
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "memory/snapshot_file.hpp"
#include "support/process.hpp"

namespace {

using shoal::test::ProcessResult;
using shoal::test::run_process;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kReady = "written, waiting for a restore";
constexpr const char* kDone = "restored checksum=";
constexpr const char* kVcpusStarted = "startup: vCPUs started";

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string tmp(const std::string& what) {
  return "/tmp/shoal-bench-restore-" + std::to_string(getpid()) + "-" + what;
}

// A number from the JSON reply line (`"name":123.4`), -1 if absent.
double field(const std::string& json, const std::string& name) {
  const size_t at = json.find("\"" + name + "\":");
  return at == std::string::npos ? -1 : std::atof(json.c_str() + at + name.size() + 3);
}

struct Snapshot {
  std::string failure;
  double file_bytes = 0, compressed_bytes = 0, write_ms = 0, stored_pages = 0, zero_pages = 0,
         working_set_pages = 0;
};

struct Workload {
  const char* name;
  const char* cmdline;
  const char* working_set_ms;  // nullptr: no working set recorded
};
const Workload kWorkloads[] = {{"all 256 MiB", "touch-restore 256", nullptr},
                               {"working set 32 MiB", "touch-restore 256 32", "500"}};

Snapshot take_snapshot(const std::string& memory, const Workload& w, const std::string& path) {
  Snapshot s;
  const std::string sock = tmp("sock"), serial = tmp("source");
  ProcessResult source;
  std::thread runner([&] {
    source = run_process(
        {SHOAL_BINARY, "run", "--kernel", SHOAL_TEST_GUEST, "--memory", memory, "--cmdline",
         w.cmdline, "--serial", serial, "--api-socket", sock, "--log-level", "warn"},
        seconds(300));
  });
  for (int i = 0; i < 30000 && slurp(serial).find(kReady) == std::string::npos; ++i)
    std::this_thread::sleep_for(milliseconds(2));
  std::vector<std::string> ctl = {SHOAL_BINARY, "ctl", sock, "snapshot", path, "--stop"};
  if (w.working_set_ms != nullptr) ctl.insert(ctl.end(), {"--working-set-ms", w.working_set_ms});
  ProcessResult r = run_process(ctl, seconds(300));
  run_process({SHOAL_BINARY, "ctl", sock, "quit"}, seconds(60));
  runner.join();
  ::unlink(serial.c_str());
  if (r.exit_code != 0) {
    s.failure = "snapshot: " + r.err + source.err;
    return s;
  }
  s.file_bytes = field(r.out, "file_bytes");
  s.compressed_bytes = field(r.out, "compressed_bytes");
  s.write_ms = field(r.out, "write_ms");
  s.stored_pages = field(r.out, "stored_pages");
  s.zero_pages = field(r.out, "zero_pages");
  s.working_set_pages = field(r.out, "working_set_pages");
  return s;
}

// The raw image for --restore-image: every stored page at its offset, the rest a hole.
std::string export_image(const std::string& snapshot, const std::string& image) {
  auto f = shoal::SnapshotFile::open(snapshot);
  if (!f) return f.error().message();
  const int fd = ::open(image.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return "image: " + std::string(std::strerror(errno));
  std::string failure;
  if (ftruncate(fd, static_cast<off_t>((*f)->header().ram_bytes)) < 0) failure = "ftruncate";
  std::vector<uint8_t> block((*f)->header().block_bytes), scratch;
  for (uint64_t b = 0; b < (*f)->blocks() && failure.empty(); ++b) {
    if (auto s = (*f)->read_block(b, block, scratch); !s.ok()) failure = s.error().message();
    (*f)->for_each_run(b, [&](uint64_t page, uint64_t at, uint64_t count) {
      const auto bytes = static_cast<ssize_t>(count * 4096);
      if (pwrite(fd, block.data() + at * 4096, static_cast<size_t>(bytes),
                 static_cast<off_t>(page * 4096)) != bytes)
        failure = "image: short write";
    });
  }
  ::close(fd);
  return failure;
}

struct Mode {
  const char* name;
  std::vector<std::string> extra;
  std::vector<double> to_vcpus_ms, whole_ms;
  std::string failure;
};

void restore_once(Mode& m, const std::string& snapshot, bool cold) {
  if (cold) {
    sync();
    std::ofstream("/proc/sys/vm/drop_caches") << "3\n";
  }
  const std::string serial = tmp("restored");
  std::vector<std::string> argv = {SHOAL_BINARY, "run",  "--restore",   snapshot,
                                   "--serial",   serial, "--log-level", "debug"};
  argv.insert(argv.end(), m.extra.begin(), m.extra.end());
  ProcessResult r = run_process(argv, seconds(300), "", kVcpusStarted);
  const std::string out = slurp(serial);
  ::unlink(serial.c_str());
  if (r.exit_code != 0 || out.find(kDone) == std::string::npos) {
    m.failure = "exit " + std::to_string(r.exit_code) + ": " + r.err.substr(0, 300);
    return;
  }
  m.whole_ms.push_back(r.seconds * 1000);
  if (r.seconds_to_mark >= 0) m.to_vcpus_ms.push_back(r.seconds_to_mark * 1000);
}

double median(std::vector<double> v) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false, cold = false;
  int runs = 5;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0) {
      json = true;
    } else if (std::strcmp(argv[i], "--cold") == 0) {
      cold = true;
    } else {
      runs = std::max(1, std::atoi(argv[i]));
    }
  }
  if (cold && geteuid() != 0) {
    std::fprintf(stderr, "restore: --cold drops the page cache, which needs root\n");
    return 2;
  }
  const std::vector<std::string> sizes = {"1G", "64G"};
  struct Row {
    std::string size;
    const Workload* workload;
    Snapshot snap;
    std::vector<Mode> modes;
  };
  std::vector<Row> rows;
  int failed = 0;
  for (const Workload& w : kWorkloads)
    for (const std::string& size : sizes) {
      Row row;
      row.size = size;
      row.workload = &w;
      const std::string snap = tmp(size + ".snap"), image = tmp(size + ".img");
      row.snap = take_snapshot(size, w, snap);
      std::string image_failure =
          row.snap.failure.empty() ? export_image(snap, image) : "no snapshot";
      row.modes = {{"lazy", {}, {}, {}, {}},
                   {"eager", {"--restore-eager"}, {}, {}, {}},
                   {"kernel paging", {"--restore-image", image}, {}, {}, {}}};
      if (!image_failure.empty()) row.modes[2].failure = image_failure;
      for (int i = 0; i < runs && row.snap.failure.empty(); ++i)
        for (Mode& m : row.modes)
          if (m.failure.empty()) restore_once(m, snap, cold);
      ::unlink(snap.c_str());
      ::unlink(image.c_str());
      rows.push_back(std::move(row));
    }
  if (json) {
    std::printf("{\"bench\":\"restore\",\"runs\":%d,\"cold\":%s,\"touched_mib\":256,\"rows\":[",
                runs, cold ? "true" : "false");
    for (size_t s = 0; s < rows.size(); ++s) {
      const Row& r = rows[s];
      std::printf(
          "%s{\"memory\":\"%s\",\"workload\":\"%s\",\"file_bytes\":%.0f,"
          "\"compressed_nonzero_bytes\":%.0f,\"write_ms\":%.1f,\"stored_pages\":%.0f,"
          "\"zero_pages\":%.0f,\"working_set_pages\":%.0f,\"modes\":[",
          s ? "," : "", r.size.c_str(), r.workload->name, r.snap.file_bytes,
          r.snap.compressed_bytes, r.snap.write_ms, r.snap.stored_pages, r.snap.zero_pages,
          r.snap.working_set_pages);
      for (size_t k = 0; k < r.modes.size(); ++k)
        std::printf("%s{\"mode\":\"%s\",\"to_vcpus_ms\":%.2f,\"whole_ms\":%.1f}", k ? "," : "",
                    r.modes[k].name, median(r.modes[k].to_vcpus_ms), median(r.modes[k].whole_ms));
      std::printf("]}");
    }
    std::printf("]}\n");
  } else {
    std::printf(
        "restore of touch-restore 256 (256 MiB written, half zero pages), then a workload, %s "
        "page cache, median of %d runs\n",
        cold ? "cold" : "warm", runs);
    for (size_t s = 0; s < rows.size(); ++s) {
      const Row& r = rows[s];
      std::printf(
          "\n%s guest, workload %s: snapshot %.2f MiB (non-zero pages lz4: %.2f MiB, %.3fx), "
          "written in %.1f ms; %.0f pages stored, %.0f zero, working set %.0f pages\n",
          r.size.c_str(), r.workload->name, r.snap.file_bytes / 1048576,
          r.snap.compressed_bytes / 1048576,
          r.snap.file_bytes / std::max(1.0, r.snap.compressed_bytes), r.snap.write_ms,
          r.snap.stored_pages, r.snap.zero_pages, r.snap.working_set_pages);
      std::printf("  %-14s %16s %16s %14s\n", "restore", "to vCPU start", "to finish", "vs lazy");
      const double lazy = median(r.modes[0].whole_ms);
      for (const Mode& m : r.modes)
        std::printf("  %-14s %13.2f ms %13.1f ms %13.2fx\n", m.name, median(m.to_vcpus_ms),
                    median(m.whole_ms), median(m.whole_ms) / lazy);
    }
  }
  for (size_t s = 0; s < rows.size(); ++s) {
    if (!rows[s].snap.failure.empty()) {
      std::fprintf(stderr, "%s %s: %s\n", rows[s].size.c_str(), rows[s].workload->name,
                   rows[s].snap.failure.c_str());
      ++failed;
    }
    for (const Mode& m : rows[s].modes)
      if (!m.failure.empty()) {
        std::fprintf(stderr, "%s %s %s: %s\n", rows[s].size.c_str(), rows[s].workload->name, m.name,
                     m.failure.c_str());
        ++failed;
      }
  }
  return failed == 0 ? 0 : 1;
}
