// The lazy restore's background loader alone, without a VM: how fast a snapshot file gets into
// a userfaultfd-registered mapping (as a restored guest's RAM is) in three ways, in one run:
// - pread: one block at a time, read, check, decompress, install (the loader before io_uring,
//   and still its fallback);
// - io_uring: 8 block reads in flight through the page cache while the loader decompresses and
//   installs the last one;
// - io_uring + O_DIRECT: the same around the page cache.
// Each warm (the file in the page cache, as just written) and cold (its pages dropped from the
// cache with POSIX_FADV_DONTNEED before every run). Prints the median time to the last block,
// guest MB/s, the ratio to pread's time in the same condition, and how much of the file sat
// in the page cache after the load (O_DIRECT leaves it out: no second copy of guest memory).
// The data: `MIB` MiB of guest RAM, a quarter of the pages zero, the rest half random bytes
// and half zero (lz4 stores them at ~55%).
//   snapshot_load [--json] [MIB] [RUNS]
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "memory/snapshot_source.hpp"
#include "memory/snapshot_writer.hpp"

namespace {

using namespace shoal;
constexpr uint64_t kPage = 4096;

uint8_t* map_ram(uint64_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  madvise(p, bytes, MADV_NOHUGEPAGE);
  return static_cast<uint8_t*>(p);
}

// The share (0..1) of `file`'s blocks that sit in the page cache now (mincore over a mapping
// of them; mincore on a file mapping needs a file this process owns or may write).
double cached_share(const SnapshotFile& file) {
  if (file.blocks() == 0) return 0;
  const auto& blocks = file.index().blocks;
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t from = blocks.front().offset / page * page;
  const uint64_t len = blocks.back().offset + blocks.back().stored_bytes - from;
  void* map = mmap(nullptr, len, PROT_READ, MAP_SHARED, file.fd(), static_cast<off_t>(from));
  if (map == MAP_FAILED) return -1;
  std::vector<unsigned char> resident((len + page - 1) / page);
  const bool ok = mincore(map, len, resident.data()) == 0;
  munmap(map, len);
  if (!ok) return -1;
  uint64_t in = 0;
  for (unsigned char r : resident) in += r & 1;
  return static_cast<double>(in) / static_cast<double>(resident.size());
}

struct Run {
  double ms = 0;
  double cached_after = 0;
  bool direct = false;
};

// One restore of `path` into a fresh mapping by the background loader; the time from its
// start to the last block installed.
Result<Run> load_once(const std::string& path, uint64_t bytes, SnapshotLoaderConfig config,
                      bool cold) {
  if (cold) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0)
      return errno_error("drop " + path + " from the page cache");
    ::close(fd);
  }
  auto file = SnapshotFile::open(path);
  if (!file) return file.error();
  std::shared_ptr<const SnapshotFile> shared = std::move(*file);
  auto uffd = Userfaultfd::open(true);
  if (!uffd) return uffd.error();
  std::unique_ptr<uint8_t, std::function<void(uint8_t*)>> ram(
      map_ram(bytes), [bytes](uint8_t* p) { munmap(p, bytes); });
  if (ram == nullptr) return errno_error("mmap");
  if (Status s = uffd->register_missing(ram.get(), bytes); !s.ok()) return s.error();
  auto dir = PageDirectory::create(bytes / kPage);
  if (!dir) return dir.error();
  std::mutex fatal_mu;  // the loader's thread reports, this one reads
  std::string fatal;
  auto failed = [&] {
    std::lock_guard lock(fatal_mu);
    return !fatal.empty();
  };
  Run run;
  {
    SnapshotSource source(
        *uffd, {ram.get(), bytes}, *dir, shared,
        [&](const Error& e) {
          std::lock_guard lock(fatal_mu);
          if (fatal.empty()) fatal = e.message();
        },
        config);
    const auto t0 = std::chrono::steady_clock::now();
    if (Status s = source.start_loader(); !s.ok()) return s.error();
    while (source.blocks_loaded() < source.blocks() && !failed())
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    run.ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    run.direct = source.stats().direct;
    source.stop();
  }
  run.cached_after = cached_share(*shared);
  if (run.cached_after < 0) return errno_error(path + ": mincore");
  if (failed()) return Error(fatal);
  // A row must be what it says: O_DIRECT refused (so read through the cache) is an error here.
  if (run.direct != config.direct)
    return Error(path + ": O_DIRECT was " + (config.direct ? "refused" : "used unasked"));
  return run;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false;
  uint64_t mib = 512, runs = 3;
  std::vector<uint64_t> numbers;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--json")
      json = true;
    else
      numbers.push_back(std::strtoull(argv[i], nullptr, 10));
  }
  if (!numbers.empty()) mib = numbers[0];
  if (numbers.size() > 1) runs = numbers[1];
  if (mib == 0 || mib > 65536 || runs == 0 || runs > 100) {
    std::fprintf(stderr, "usage: snapshot_load [--json] [MIB 1..65536] [RUNS 1..100]\n");
    return 2;
  }
  const uint64_t bytes = mib << 20;
  const std::string path = "/var/tmp/shoal-bench-load-" + std::to_string(getpid()) + ".snap";
  uint64_t file_bytes = 0;
  {
    uint8_t* ram = map_ram(bytes);
    auto dir = PageDirectory::create(bytes / kPage);
    if (ram == nullptr || !dir) {
      std::fprintf(stderr, "snapshot_load: no memory for %llu MiB of guest RAM\n",
                   static_cast<unsigned long long>(mib));
      return 1;
    }
    std::mt19937_64 rng(42);
    for (uint64_t p = 0; p < bytes / kPage; ++p) {
      if (p % 4 != 0) {
        auto* w = reinterpret_cast<uint64_t*>(ram + p * kPage);
        for (uint64_t i = 0; i < kPage / 16; ++i) w[i] = rng();
      } else {
        ram[p * kPage] = 0;  // mapped, all zero: a zero extent
      }
    }
    dir->set_range(0, bytes / kPage, PageState::kPresent);
    SnapshotInput in;
    in.ram = ram;
    in.ram_bytes = bytes;
    in.directory = &*dir;
    in.vcpus = 1;
    auto w = write_snapshot(path, in);
    munmap(ram, bytes);
    if (!w) {
      // write_snapshot writes beside PATH and renames it over PATH: nothing to remove.
      std::fprintf(stderr, "snapshot_load: %s\n", w.error().message().c_str());
      return 1;
    }
    file_bytes = w->file_bytes;
  }
  struct Way {
    const char* name;
    SnapshotLoaderConfig config;
  };
  const Way ways[] = {{"pread, one block at a time", {0, false}},
                      {"io_uring, 8 in flight", {8, false}},
                      {"io_uring, 8 in flight, O_DIRECT", {8, true}}};
  if (!json)
    std::printf("snapshot loader: %llu MiB of guest RAM, file %.1f MiB, median of %llu runs\n",
                static_cast<unsigned long long>(mib), static_cast<double>(file_bytes) / (1 << 20),
                static_cast<unsigned long long>(runs));
  std::string out = "{\"ram_mib\":" + std::to_string(mib) +
                    ",\"file_bytes\":" + std::to_string(file_bytes) + ",\"ways\":[";
  int status = 0;
  constexpr size_t kWays = sizeof ways / sizeof ways[0];
  for (const bool cold : {false, true}) {
    // Round-robin over the ways, so that a drift of the machine's speed hits each alike.
    std::vector<double> ms[kWays], cached[kWays];
    for (uint64_t r = 0; r < runs && status == 0; ++r)
      for (size_t w = 0; w < kWays && status == 0; ++w) {
        auto run = load_once(path, bytes, ways[w].config, cold);
        if (!run) {
          std::fprintf(stderr, "snapshot_load: %s: %s\n", ways[w].name,
                       run.error().message().c_str());
          status = 1;
          break;
        }
        ms[w].push_back(run->ms);
        cached[w].push_back(run->cached_after);
      }
    if (status != 0) break;
    const double pread_ms = median(ms[0]);
    for (size_t w = 0; w < kWays; ++w) {
      const double m = median(ms[w]);
      const double mbs = static_cast<double>(mib) / (m / 1000.0);
      if (json) {
        char b[256];
        std::snprintf(b, sizeof b,
                      "%s{\"way\":\"%s\",\"cold\":%s,\"ms\":%.1f,\"guest_mb_s\":%.0f,"
                      "\"ratio_to_pread\":%.2f,\"cached_after\":%.2f}",
                      out.back() == '[' ? "" : ",", ways[w].name, cold ? "true" : "false", m, mbs,
                      m / pread_ms, median(cached[w]));
        out += b;
      } else {
        std::printf(
            "%-5s %-34s %8.1f ms  %7.0f MB/s of guest RAM  %.2fx pread's time  "
            "file in the page cache after: %3.0f%%\n",
            cold ? "cold" : "warm", ways[w].name, m, mbs, m / pread_ms, 100 * median(cached[w]));
      }
    }
  }
  ::unlink(path.c_str());
  if (json && status == 0) std::printf("%s]}\n", out.c_str());
  return status;
}
