// virtio-blk from a file in the host's page cache: the test guest's polling driver (at CPL3,
// guest/virtio_blk.c) reads and writes MIB MiB sequentially in 128 KiB requests and then in
// 4 KiB requests at random, 32 in flight, under shoal and under QEMU's strongest setup for it
// (-M microvm, virtio-blk-device on an iothread, aio=io_uring, cache=writeback), both with the
// same guest and driver. `fio` on the same file from the host (io_uring, the same sizes and
// depth) is the ceiling neither can pass. Also notifications per request (each is a guest
// exit): shoal's device keeps them off while it has work. Then the channel: the guest's `chan`
// does strict request/response round trips of 64 bytes through shoal's --channel (a
// virtio-console port on a Unix socket) and through QEMU's virtconsole on a socket chardev,
// both to this process, which echoes. And the disk driven from the second host of a pod.
//   devices [--json] [--runs N] [--mib M] [--qemu PATH]
// Needs /dev/kvm (and QEMU, fio for their rows: a missing one is reported, not faked).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "support/echo_peer.hpp"
#include "support/process.hpp"

namespace {

using shoal::test::run_process;
constexpr const char* kQboot = "/usr/share/qemu/qboot.rom";

struct Figures {
  double seq_mbps = -1, rand_iops = -1, notifies_per_request = -1;
  std::string failure;
};

double field(const std::string& out, const std::string& key) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex(key + "=([0-9]+)"))) return -1;
  return std::stod(m[1]);
}

// One guest run's result line.
Figures guest_figures(const shoal::test::ProcessResult& r, const char* what) {
  Figures f;
  if (r.out.find("shoal-guest: result ok") == std::string::npos) {
    f.failure = std::string(what) + " failed (exit " + std::to_string(r.exit_code) +
                "): " + r.out.substr(0, 300) + r.err.substr(0, 300);
    return f;
  }
  f.seq_mbps = field(r.out, "seq_mbps");
  f.rand_iops = field(r.out, "rand4k_iops");
  f.notifies_per_request = field(r.out, "notifies") / field(r.out, "requests");
  return f;
}

std::vector<std::string> shoal_argv(const std::string& image, const std::string& workload) {
  return {SHOAL_BINARY, "run",    "--kernel", SHOAL_TEST_GUEST, "--memory", "512M", "--cmdline",
          workload,     "--disk", image,      "--log-level",    "warn"};
}

// QEMU microvm booting the test guest with `workload`, plus `devices` (its -device etc.).
std::vector<std::string> qemu_argv(const std::string& qemu, const std::string& workload,
                                   const std::vector<std::string>& devices) {
  std::vector<std::string> a = {qemu, "-accel", "kvm", "-cpu", "qemu64", "-m", "512M", "-machine",
                                "microvm,x-option-roms=off,rtc=off", "-kernel", SHOAL_TEST_GUEST,
                                "-append", workload, "-display", "none", "-serial", "stdio",
                                "-monitor", "none", "-no-reboot", "-no-user-config", "-nodefaults",
                                "-device", "isa-debug-exit,iobase=0x501,iosize=2",
                                // The test guest's drivers speak virtio 1.x only.
                                "-global", "virtio-mmio.force-legacy=false"};
  a.insert(a.end(), devices.begin(), devices.end());
  if (::access(kQboot, R_OK) == 0) {
    a.push_back("-bios");
    a.push_back(kQboot);
  }
  return a;
}

// QEMU's strongest virtio-blk on microvm: its own iothread, io_uring, the page cache.
std::vector<std::string> qemu_disk(const std::string& image) {
  return {"-object", "iothread,id=io0",
          "-drive",  "id=d0,if=none,format=raw,cache=writeback,aio=io_uring,file=" + image,
          "-device", "virtio-blk-device,drive=d0,iothread=io0"};
}

// fio's JSON: the first job's "bw" (KiB/s) or "iops" in its read or write section.
double fio_value(const std::string& json, const std::string& section, const std::string& key) {
  const size_t at = json.find("\"" + section + "\" : {");
  if (at == std::string::npos) return -1;
  std::smatch m;
  const std::string rest = json.substr(at, 2000);
  if (!std::regex_search(rest, m, std::regex("\"" + key + "\" : ([0-9.]+)"))) return -1;
  return std::stod(m[1]);
}

Figures fio_figures(const std::string& image, uint64_t mib, bool write) {
  Figures f;
  const std::string rw = write ? "write" : "read";
  auto job = [&](const std::string& pattern, const std::string& bs) {
    return run_process(
        {"/usr/bin/fio", "--name=ceiling", "--filename=" + image, "--rw=" + pattern, "--bs=" + bs,
         "--iodepth=32", "--ioengine=io_uring",
         // fio drops the file's cached pages before a job unless told not to:
         // the ceiling would be the disk's, not the page cache's.
         "--invalidate=0", "--size=" + std::to_string(mib) + "M", "--output-format=json"},
        std::chrono::seconds(120));
  };
  auto seq = job(rw, "128k");
  auto rnd = job(write ? "randwrite" : "randread", "4k");
  if (seq.exit_code != 0 || rnd.exit_code != 0) {
    f.failure = "fio failed: " + seq.err.substr(0, 200) + rnd.err.substr(0, 200);
    return f;
  }
  f.seq_mbps = fio_value(seq.out, rw, "bw") * 1024 / 1e6;
  f.rand_iops = fio_value(rnd.out, rw, "iops");
  return f;
}

// The same workload in a 2-host pod over TCP between network namespaces
// (scripts/netns-cluster), the disk on host 0 and the vCPU that drives it on host 1: every
// notify is a forwarded exit and every ring and buffer page moves between the hosts, which is
// what a virtio request from another host costs. Needs root (ip netns).
Figures pod_figures(const std::string& image, const std::string& workload) {
  if (::geteuid() != 0) return {-1, -1, -1, "skipped: needs root (ip netns)"};
  const std::string base = "/tmp/shoal-bench-devices-" + std::to_string(getpid());
  const std::string secret = base + ".secret", spec = base + "-pod.yaml";
  // Mode 0600: the secret is the pod's key.
  auto write_private = [](const std::string& path, const std::string& text) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const bool ok =
        fd >= 0 && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    if (fd >= 0) ::close(fd);
    return ok;
  };
  const std::string yaml =
      "apiVersion: shoal/v1\nkind: Pod\nmetadata: {name: devbench}\nspec:\n"
      "  guest: {kernel: " SHOAL_TEST_GUEST ", cmdline: \"" +
      workload + "\"}\n  memory: 512M\n  vcpus: 2\n  transport: tcp\n  placement: static\n" +
      "  secretFile: " + secret + "\n  disks: [\"" + image + "\"]\n  hosts:\n" +
      "    - {name: h0, address: \"127.77.0.1:7100\", vcpus: \"1\", memory: even}\n" +
      "    - {name: h1, address: \"127.77.0.2:7100\", vcpus: \"0\", memory: even}\n";
  if (!write_private(secret, "devices-bench-secret-0123456789abcdef\n") ||
      !write_private(spec, yaml))
    return {-1, -1, -1, "cannot write " + secret + " or " + spec};
  auto r = run_process(
      {"/usr/bin/env", "SHOAL_BIN=" SHOAL_BINARY, SHOAL_SOURCE_DIR "/scripts/netns-cluster", "2",
       secret, "--", SHOAL_BINARY, "pod", "up", spec},
      std::chrono::seconds(600));
  ::unlink(secret.c_str());
  ::unlink(spec.c_str());
  return guest_figures(r, "pod");
}

// One `chan N` run with this process as the echoing peer: round trips/s and notifies/message.
std::pair<double, double> channel_figures(const std::string& qemu, int n, std::string* failure) {
  const std::string sock = "/tmp/shoal-bench-chan-" + std::to_string(getpid());
  const std::string workload = "chan " + std::to_string(n) + " 64";
  std::vector<std::string> argv;
  if (qemu.empty()) {
    argv = {SHOAL_BINARY, "run",  "--kernel",    SHOAL_TEST_GUEST,
            "--memory",   "128M", "--cmdline",   workload,
            "--channel",  sock,   "--log-level", "warn"};
  } else {
    argv = qemu_argv(qemu, workload,
                     {"-chardev", "socket,id=c0,server=on,wait=off,path=" + sock, "-device",
                      "virtio-serial-device", "-device", "virtconsole,chardev=c0"});
  }
  uint64_t echoed = 0;
  std::thread peer([&] { echoed = shoal::test::echo_peer(sock); });
  auto r = run_process(argv, std::chrono::seconds(300));
  peer.join();
  ::unlink(sock.c_str());
  if (r.out.find("shoal-guest: result ok") == std::string::npos) {
    *failure = (qemu.empty() ? "shoal" : "QEMU") + std::string(" chan failed: ") +
               r.out.substr(0, 300) + r.err.substr(0, 300);
    return {-1, -1};
  }
  std::smatch m;
  const double per_message =
      std::regex_search(r.out, m, std::regex("notifies_per_message=([0-9.]+)")) ? std::stod(m[1])
                                                                                : -1;
  return {field(r.out, "round_trips_per_s"), per_message};
}

double median(std::vector<double> v) {
  v.erase(std::remove(v.begin(), v.end(), -1.0), v.end());
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string num(double v, const char* fmt = "%.0f") {
  if (v < 0) return "-";
  char b[32];
  std::snprintf(b, sizeof b, fmt, v);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false;
  int runs = 3;
  uint64_t mib = 64;
  std::string qemu = "/usr/bin/qemu-system-x86_64";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--json")
      json = true;
    else if (a == "--runs" && has_value)
      runs = std::max(1, std::atoi(argv[++i]));
    else if (a == "--mib" && has_value)
      mib = std::max<uint64_t>(1, std::strtoull(argv[++i], nullptr, 10));
    else if (a == "--qemu" && has_value)
      qemu = argv[++i];
    else {
      std::fprintf(stderr, "usage: devices [--json] [--runs N] [--mib M] [--qemu PATH]\n");
      return 2;
    }
  }
  if (::access("/dev/kvm", R_OK | W_OK) != 0) {
    std::fprintf(stderr, "devices: needs /dev/kvm (run it inside scripts/test-vm elsewhere)\n");
    return 77;
  }
  // Twice the data the guest touches, written once so that every page is in the page cache.
  const std::string image = "/tmp/shoal-bench-devices-" + std::to_string(getpid()) + ".img";
  {
    const int fd = ::open(image.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    std::vector<uint8_t> chunk(1 << 20);
    for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<uint8_t>(i * 31 + 7);
    for (uint64_t m = 0; m < 2 * mib; ++m)
      if (fd < 0 || ::write(fd, chunk.data(), chunk.size()) != static_cast<ssize_t>(chunk.size()))
        return std::fprintf(stderr, "devices: cannot write %s\n", image.c_str()), 1;
    ::close(fd);
  }
  const bool have_qemu = ::access(qemu.c_str(), X_OK) == 0;
  struct Row {
    std::string name;
    std::map<std::string, std::vector<Figures>> by_op;  // "read", "write"
  };
  std::vector<Row> rows = {
      {"shoal", {}}, {"QEMU microvm", {}}, {"fio on the host", {}}, {"shoal pod, h1", {}}};
  // Every request from host 1 moves pages over TCP: a smaller size keeps the run short.
  const uint64_t pod_mib = std::min<uint64_t>(mib, 8);
  std::string notes;
  for (int r = 0; r < runs; ++r)
    for (const char* op : {"read", "write"}) {
      const std::string workload = std::string("blk-") + op + " " + std::to_string(mib);
      rows[0].by_op[op].push_back(guest_figures(
          run_process(shoal_argv(image, workload), std::chrono::seconds(300)), "shoal"));
      if (have_qemu)
        rows[1].by_op[op].push_back(guest_figures(
            run_process(qemu_argv(qemu, workload, qemu_disk(image)), std::chrono::seconds(300)),
            "QEMU"));
      rows[2].by_op[op].push_back(fio_figures(image, mib, op == std::string("write")));
      rows[3].by_op[op].push_back(
          pod_figures(image, std::string("blk-") + op + " " + std::to_string(pod_mib)));
    }
  ::unlink(image.c_str());
  if (!have_qemu) notes += "QEMU not found at " + qemu + "; ";
  // The channel: [0] shoal, [1] QEMU; round trips/s and notifies per message, per run.
  constexpr int kRoundTrips = 20000;
  std::vector<double> trips[2], per_message[2];
  for (int r = 0; r < runs; ++r)
    for (int who = 0; who < (have_qemu ? 2 : 1); ++who) {
      std::string failure;
      const auto [t, m] = channel_figures(who == 0 ? "" : qemu, kRoundTrips, &failure);
      trips[who].push_back(t);
      per_message[who].push_back(m);
      if (!failure.empty()) notes += failure + "; ";
    }
  auto med = [](const std::vector<Figures>& v, double Figures::*m) {
    std::vector<double> xs;
    for (const Figures& f : v) xs.push_back(f.*m);
    return median(xs);
  };
  for (const Row& row : rows)
    for (const auto& [op, v] : row.by_op)
      for (const Figures& f : v)
        if (!f.failure.empty()) notes += row.name + " " + op + ": " + f.failure + "; ";
  const double shoal_seq = med(rows[0].by_op["read"], &Figures::seq_mbps),
               shoal_rand = med(rows[0].by_op["read"], &Figures::rand_iops);
  if (json) {
    std::printf("{\"bench\":\"devices\",\"mib\":%llu,\"pod_mib\":%llu,\"runs\":%d,\"rows\":[",
                static_cast<unsigned long long>(mib), static_cast<unsigned long long>(pod_mib),
                runs);
    for (size_t i = 0; i < rows.size(); ++i) {
      auto& row = rows[i];
      std::printf("%s{\"name\":\"%s\"", i ? "," : "", row.name.c_str());
      for (const char* op : {"read", "write"})
        std::printf(
            ",\"%s_seq_mbps\":%.1f,\"%s_rand4k_iops\":%.0f,\"%s_notifies_per_request\":%.4f", op,
            med(row.by_op[op], &Figures::seq_mbps), op, med(row.by_op[op], &Figures::rand_iops), op,
            med(row.by_op[op], &Figures::notifies_per_request));
      std::printf("}");
    }
    std::printf("],\"channel\":[");
    for (int who = 0; who < 2; ++who)
      std::printf("%s{\"name\":\"%s\",\"round_trips_per_s\":%.0f,\"notifies_per_message\":%.4f}",
                  who ? "," : "", rows[who].name.c_str(), median(trips[who]),
                  median(per_message[who]));
    std::printf("],\"notes\":\"%s\"}\n",
                std::regex_replace(notes, std::regex("[\"\\\\\n]"), " ").c_str());
    return 0;
  }
  std::printf("virtio-blk, %llu MiB from the page cache, 32 in flight; median of %d run(s)\n",
              static_cast<unsigned long long>(mib), runs);
  std::printf(
      "(shoal pod, h1: %llu MiB, the disk on host 0, the vCPU on host 1 of 2 netns "
      "hosts over TCP)\n",
      static_cast<unsigned long long>(pod_mib));
  std::printf("%-16s %10s %12s %10s %12s %10s %10s %14s\n", "", "read MB/s", "read 4K IOPS",
              "write MB/s", "write 4K IOPS", "notif/req", "read/shoal", "4K IOPS/shoal");
  for (auto& row : rows) {
    const double seq = med(row.by_op["read"], &Figures::seq_mbps),
                 rnd = med(row.by_op["read"], &Figures::rand_iops);
    std::printf("%-16s %10s %12s %10s %12s %10s %10s %14s\n", row.name.c_str(), num(seq).c_str(),
                num(rnd).c_str(), num(med(row.by_op["write"], &Figures::seq_mbps)).c_str(),
                num(med(row.by_op["write"], &Figures::rand_iops)).c_str(),
                num(med(row.by_op["read"], &Figures::notifies_per_request), "%.3f").c_str(),
                num(seq > 0 && shoal_seq > 0 ? seq / shoal_seq : -1, "%.2fx").c_str(),
                num(rnd > 0 && shoal_rand > 0 ? rnd / shoal_rand : -1, "%.2fx").c_str());
  }
  std::printf("\nchannel, %d round trips of 64 bytes to an echoing peer on a Unix socket\n",
              kRoundTrips);
  std::printf("%-16s %14s %12s %10s\n", "", "round trips/s", "notif/msg", "vs shoal");
  for (int who = 0; who < 2; ++who) {
    const double t = median(trips[who]), shoal_t = median(trips[0]);
    std::printf("%-16s %14s %12s %10s\n", rows[who].name.c_str(), num(t).c_str(),
                num(median(per_message[who]), "%.3f").c_str(),
                num(t > 0 && shoal_t > 0 ? t / shoal_t : -1, "%.2fx").c_str());
  }
  if (!notes.empty()) std::printf("notes: %s\n", notes.c_str());
  return 0;
}
