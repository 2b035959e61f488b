// Remote page faults between two pod hosts in network namespaces, over TCP or RDMA.
//
//   scripts/netns-cluster 2 SECRET_FILE -- build/bench/remote_faults [PAGES]
//   scripts/test-vm --rdma -- env SHOAL_CLUSTER_RDMA=1 scripts/netns-cluster 2 SECRET_FILE --
//       build/bench/remote_faults --transport rdma [--unsealed] [PAGES]
//
// With --transport rdma both hosts are in one namespace (soft-RoCE serves only the first) at
// 127.1.0.1 and 127.1.0.2, and the TCP links are upgraded to RdmaLinks as pod members do;
// inside the emulated test machine the times are emulated, and the output says so.
//
// Host A is this process in namespace h0; host B is this process too, its sockets opened by a
// thread that entered namespace h1 (setns), so the link crosses the veth pair and the bridge as
// between two machines. Both hosts run the real coherent memory (userfaultfd, zero pool, the
// protocol, the mesh); faults are taken by host threads touching the mapping, as a vCPU's would
// be. Every page is homed on B. Prints, per kind of fault, p50/p99 µs as the touching thread
// saw it, pages/s, and the bytes of page contents on the wire; and as the baseline in the same
// process, the kernel's own first touch and a first touch B serves from its own pool.
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "memory/coherent_memory.hpp"
#include "net/frame_cipher.hpp"
#include "net/rdma_link.hpp"
#include "net/tcp_link.hpp"
#include "pod/pod_mesh.hpp"

namespace {

using namespace shoal;
using Clock = std::chrono::steady_clock;
constexpr uint64_t kPage = 4096;
constexpr uint16_t kPort = 7200;

struct Host {
  uint8_t* ram = nullptr;
  std::unique_ptr<PodMesh> mesh;
  std::unique_ptr<CoherentMemory> memory;
};

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * static_cast<double>(v.size() - 1))];
}

// Touches `pages` pages from `first` one at a time (a read or a write of one byte each) on a
// fresh thread; returns the µs each touch took.
std::vector<double> touch(uint8_t* ram, uint64_t first, uint64_t pages, bool write,
                          uint64_t* sink) {
  std::vector<double> us(pages);
  std::thread t([&] {
    uint64_t s = 0;
    for (uint64_t i = 0; i < pages; ++i) {
      volatile uint8_t* p = ram + (first + i) * kPage + (i * 64) % kPage;
      const auto t0 = Clock::now();
      if (write)
        *p = static_cast<uint8_t>(i | 1);
      else
        s += *p;
      us[i] = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    }
    *sink += s;
  });
  t.join();
  return us;
}

// --json: every report() becomes one member of a single object printed at the end.
bool g_json = false;
std::string g_json_out;
// The lines for people: stdout, or stderr with --json so that stdout is the one JSON object.
FILE* g_text = stdout;

void report(const char* what, const std::vector<double>& us, uint64_t wire_bytes) {
  double total = 0;
  for (double u : us) total += u;
  if (g_json) {
    char b[512];
    std::snprintf(b, sizeof b,
                  ",\"%s\":{\"p50_us\":%.2f,\"p99_us\":%.2f,\"pages_per_s\":%.0f,"
                  "\"wire_bytes\":%llu}",
                  what, pct(us, 0.5), pct(us, 0.99), static_cast<double>(us.size()) / total * 1e6,
                  static_cast<unsigned long long>(wire_bytes));
    g_json_out += b;
    return;
  }
  std::printf("%-44s p50 %7.1f us  p99 %7.1f us  %9.0f pages/s  page bytes on the wire %llu\n",
              what, pct(us, 0.5), pct(us, 0.99), static_cast<double>(us.size()) / total * 1e6,
              static_cast<unsigned long long>(wire_bytes));
}

// The wire's AEAD alone: sealing one 4 KiB page's frame on one side and opening it on the
// other, as every page crossing the link is (net/frame_cipher.hpp).
std::vector<double> aead_page_us(uint64_t pages) {
  net::Key key{};
  key.fill(0x33);
  net::FrameSealer sealer(key);
  net::FrameOpener opener(key);
  const net::Frame page{net::MessageType::kCoherence, 1, std::vector<uint8_t>(kPage, 0xab)};
  std::vector<double> us(pages);
  for (uint64_t i = 0; i < pages; ++i) {
    const auto t0 = Clock::now();
    const auto wire = sealer.seal(page);
    net::FrameDecoder d;
    (void)d.feed(wire);
    auto opened = opener.open(*d.next());
    us[i] = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    if (!opened) std::abort();
  }
  return us;
}

double mean(const std::vector<double>& v) {
  double total = 0;
  for (double x : v) total += x;
  return v.empty() ? 0 : total / static_cast<double>(v.size());
}

uint64_t wire_bytes(const Host& a, const Host& b) {
  return a.memory->stats().page_bytes_sent + b.memory->stats().page_bytes_sent;
}

struct Options {
  uint64_t pages = 20000;
  bool rdma = false;
  bool sealed = true;
};

int run(const Options& o) {
  const uint64_t pages = o.pages;
  const char* prefix = std::getenv("SHOAL_NETNS_PREFIX");
  std::shared_ptr<net::RdmaDevice> device;
  if (o.rdma) {
    auto d = net::RdmaDevice::open("");
    if (!d) {
      std::fprintf(stderr, "remote_faults: %s\n", d.error().message().c_str());
      return 1;
    }
    device = std::move(*d);
  }
  if (prefix == nullptr) {
    std::fprintf(stderr,
                 "remote_faults: run me inside a 2-host cluster:\n"
                 "  scripts/netns-cluster 2 SECRET_FILE -- build/bench/remote_faults [PAGES]\n");
    return 2;
  }
  // Both ends are this process; the handshake still runs as between two nodes.
  std::vector<uint8_t> secret(32, 0x5a);
  const uint64_t bytes =
      (pages * 4 * kPage + kHomePieceBytes - 1) / kHomePieceBytes * kHomePieceBytes;
  Host hosts[2];
  std::string error;
  std::atomic<bool> finishing{false};  // the links closing at the end are not errors
  for (int i = 0; i < 2; ++i) {
    Host& h = hosts[i];
    h.ram = static_cast<uint8_t*>(mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
    h.mesh = std::make_unique<PodMesh>(
        static_cast<NodeId>(i), std::vector<std::string>{"a", "b"},
        PodMesh::Handlers{[&h](CoherenceMessage m) { h.memory->deliver(std::move(m)); },
                          [](NodeId, const ForwardedExit&, uint32_t) {},
                          [](NodeId, const PodOutcome&) {},
                          [&](NodeId, const Error& e) {
                            if (!finishing) error = e.message();
                          }},
        std::chrono::milliseconds(1000));
    CoherentMemoryConfig c;
    c.self = static_cast<NodeId>(i);
    c.home_of_piece.assign(bytes / kHomePieceBytes, 1);  // every page homed on B
    c.pool_bytes = 64ull << 20;
    auto m = CoherentMemory::create(h.ram, bytes, c, *h.mesh,
                                    [&error](const Error& e) { error = e.message(); });
    if (!m) {
      std::fprintf(stderr, "remote_faults: %s\n", m.error().message().c_str());
      return 1;
    }
    h.memory = std::move(*m);
  }
  // B listens from inside namespace h1; A connects from h0 (where this process runs).
  const std::string b_addr = o.rdma ? "127.1.0.2" : "127.77.0.2";
  net::RdmaLinkConfig rdma_config;
  rdma_config.sealed = o.sealed;
  std::shared_ptr<net::Link> b_side;
  std::string b_error;
  std::unique_ptr<net::TcpListener> listener;
  std::thread b([&] {
    const std::string ns = std::string("/var/run/netns/") + prefix + "-h1";
    const int fd = o.rdma ? -2 : open(ns.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd == -1 || (fd >= 0 && setns(fd, CLONE_NEWNET) != 0)) {
      b_error = "enter " + ns + ": " + std::strerror(errno);
      return;
    }
    if (fd >= 0) close(fd);
    auto l = net::TcpListener::listen(b_addr, kPort);
    if (!l) {
      b_error = l.error().message();
      return;
    }
    auto sock = (*l)->accept();
    if (!sock) {
      b_error = sock.error().message();
      return;
    }
    auto link = net::TcpLink::accept(std::move(*sock), {"b", secret, std::chrono::seconds(5)});
    if (!link) {
      b_error = link.error().message();
    } else if (o.rdma) {
      auto r = net::RdmaLink::upgrade(std::move(*link), device, false, rdma_config);
      if (r)
        b_side = std::move(*r);
      else
        b_error = r.error().message();
    } else {
      b_side = std::move(*link);
    }
  });
  std::shared_ptr<net::Link> a_side;
  for (int attempt = 0; attempt < 50 && !a_side; ++attempt) {
    auto link = net::TcpLink::connect(b_addr, kPort, {"a", secret, std::chrono::seconds(5)});
    if (!link) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    } else if (o.rdma) {
      auto r = net::RdmaLink::upgrade(std::move(*link), device, true, rdma_config);
      if (!r) {
        std::fprintf(stderr, "remote_faults: %s\n", r.error().message().c_str());
        break;
      }
      a_side = std::move(*r);
    } else {
      a_side = std::move(*link);
    }
  }
  b.join();
  if (!a_side || !b_side) {
    std::fprintf(stderr, "remote_faults: no link between the namespaces: %s\n", b_error.c_str());
    return 1;
  }
  // The floor, on the same links before the meshes take them: a sealed request from A and a
  // sealed 4 KiB answer from B, as a remote fault's messages are, with no userfaultfd.
  const uint64_t trips = std::min<uint64_t>(pages, 5000);
  std::vector<double> rtt_us(trips);
  std::thread echo([&] {
    for (uint64_t i = 0; i < trips; ++i) {
      auto f = b_side->receive();
      if (!f || !b_side
                     ->send(net::Frame{net::MessageType::kCoherence, f->request,
                                       std::vector<uint8_t>(kPage + 16, 0x5a)})
                     .ok())
        return;
    }
  });
  for (uint64_t i = 0; i < trips; ++i) {
    const auto t0 = Clock::now();
    const bool ok = a_side
                        ->send(net::Frame{net::MessageType::kCoherence, static_cast<uint32_t>(i),
                                          std::vector<uint8_t>(16, 1)})
                        .ok() &&
                    a_side->receive().ok();
    rtt_us[i] = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    if (!ok) {
      std::fprintf(stderr, "remote_faults: the round trip failed\n");
      return 1;
    }
  }
  echo.join();
  hosts[0].mesh->attach(1, a_side);
  hosts[1].mesh->attach(0, b_side);

  uint64_t sink = 0;
  Host& A = hosts[0];
  Host& B = hosts[1];
  // Baselines: the kernel's first touch of an anonymous page, and B's own dormant pages.
  auto* plain = static_cast<uint8_t*>(mmap(nullptr, pages * kPage, PROT_READ | PROT_WRITE,
                                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  auto kernel = touch(plain, 0, pages, true, &sink);
  munmap(plain, pages * kPage);
  auto local = touch(B.ram, 0, pages, true, &sink);  // region 0: B's, served from B's pool

  uint64_t w0 = wire_bytes(A, B);
  auto dormant_r = touch(A.ram, pages, pages, false, &sink);     // region 1: never touched
  auto dormant_w = touch(A.ram, 2 * pages, pages, true, &sink);  // region 2: never touched
  const uint64_t dormant_wire = wire_bytes(A, B) - w0;

  // Region 3: B writes it, then A reads (B's copy is recalled to shared: one page over),
  // then B writes it again (A's copies invalidated), then A writes (recalled: a page over).
  const uint64_t r3 = 3 * pages;
  touch(B.ram, r3, pages, true, &sink);
  w0 = wire_bytes(A, B);
  auto remote_r = touch(A.ram, r3, pages, false, &sink);
  const uint64_t read_wire = wire_bytes(A, B) - w0;
  touch(B.ram, r3, pages, true, &sink);
  w0 = wire_bytes(A, B);
  auto remote_w = touch(A.ram, r3, pages, true, &sink);
  const uint64_t write_wire = wire_bytes(A, B) - w0;

  std::fprintf(g_text, "remote faults between two %s, %llu pages per case%s\n",
               o.rdma ? (o.sealed ? "hosts over RDMA (sealed frames)"
                                  : "hosts over RDMA (frames not sealed)")
                      : "netns hosts over TCP",
               static_cast<unsigned long long>(pages),
               std::getenv("SHOAL_TEST_VM") ? " [EMULATED: inside the TCG test machine, times are "
                                              "not speeds]"
                                            : "");
  report(o.sealed ? "floor: sealed round trip, 4 KiB answer" : "floor: round trip, 4 KiB answer",
         rtt_us, 0);
  report("baseline: kernel first touch (no uffd)", kernel, 0);
  report("baseline: first touch served by own pool", local, 0);
  report("dormant page homed remotely, read", dormant_r, 0);
  report("dormant page homed remotely, write", dormant_w, dormant_wire);
  report("remote 4 KiB read fault (page moves)", remote_r, read_wire);
  report("remote 4 KiB write fault (page moves)", remote_w, write_wire);
  report("AES-256-GCM seal + open of a 4 KiB page", aead_page_us(pages), 0);
  std::fprintf(g_text,
               "ratios to the kernel's first touch (p50): remote read %.1fx, remote write %.1fx, "
               "dormant page homed remotely %.1fx\n",
               pct(remote_r, 0.5) / pct(kernel, 0.5), pct(remote_w, 0.5) / pct(kernel, 0.5),
               pct(dormant_w, 0.5) / pct(kernel, 0.5));
  std::fprintf(
      g_text,
      "ratios to the sealed round trip (p50): remote read %.1fx, remote write %.1fx; dormant "
      "pages homed remotely, amortized: read %.1f us/page, write %.1f us/page\n",
      pct(remote_r, 0.5) / pct(rtt_us, 0.5), pct(remote_w, 0.5) / pct(rtt_us, 0.5), mean(dormant_r),
      mean(dormant_w));
  if (g_json) {
    char b[160];
    std::snprintf(b, sizeof b, ",\"dormant_remote_amortized_us\":{\"read\":%.2f,\"write\":%.2f}",
                  mean(dormant_r), mean(dormant_w));
    g_json_out += b;
  }
  std::fprintf(g_text, "bytes on the wire for first touches of dormant pages: %llu (must be 0)\n",
               static_cast<unsigned long long>(dormant_wire));
  auto lat = A.memory->take_latencies();
  std::fprintf(g_text,
               "inside host A's fault handler (fault read -> page mapped): read p50 %.1f us p99 "
               "%.1f us, write p50 %.1f us p99 %.1f us\n",
               pct(lat.read_us, 0.5), pct(lat.read_us, 0.99), pct(lat.write_us, 0.5),
               pct(lat.write_us, 0.99));
  finishing = true;
  for (auto& h : hosts) {
    h.memory->stop();
    h.mesh->close();
  }
  if (!error.empty()) std::fprintf(stderr, "remote_faults: %s\n", error.c_str());
  std::fprintf(g_text, "(checksum of what was read: %llu)\n",
               static_cast<unsigned long long>(sink));
  return error.empty() && dormant_wire == 0 ? 0 : 1;
}

}  // namespace

//   remote_faults [--json] [--transport tcp|rdma] [--unsealed] [PAGES]
int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") {
      g_json = true;
      g_text = stderr;
    } else if (a == "--transport" && i + 1 < argc &&
               (std::string(argv[i + 1]) == "tcp" || std::string(argv[i + 1]) == "rdma")) {
      o.rdma = std::string(argv[++i]) == "rdma";
    } else if (a == "--unsealed") {
      o.sealed = false;
    } else if (!a.empty() && a.find_first_not_of("0123456789") == std::string::npos) {
      o.pages = std::strtoull(argv[i], nullptr, 10);
    } else {
      std::fprintf(stderr,
                   "remote_faults: unknown argument '%s'\n"
                   "usage: remote_faults [--json] [--transport tcp|rdma] [--unsealed] [PAGES]\n",
                   argv[i]);
      return 2;
    }
  }
  if (!o.sealed && !o.rdma) {
    std::fprintf(stderr, "remote_faults: --unsealed is for --transport rdma (TCP always seals)\n");
    return 2;
  }
  o.pages = std::max<uint64_t>(o.pages, 100);
  const int rc = run(o);
  if (g_json)
    std::printf(
        "{\"bench\":\"remote_faults\",\"transport\":\"%s\",\"sealed\":%s,"
        "\"emulated\":%s,\"pages\":%llu%s}\n",
        o.rdma ? "rdma" : "tcp", o.sealed ? "true" : "false",
        std::getenv("SHOAL_TEST_VM") ? "true" : "false", static_cast<unsigned long long>(o.pages),
        g_json_out.c_str());
  return rc;
}
