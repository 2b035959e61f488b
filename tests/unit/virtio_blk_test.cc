// virtio-blk behind the virtio-mmio transport, driven as a guest driver would drive it: through
// the transport's registers and a split virtqueue in (unpopulated, MAP_NORESERVE) guest RAM,
// against a real image file. No KVM: notifications go through the QueueNotify register.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "devices/virtio_blk.hpp"
#include "devices/virtio_mmio.hpp"

namespace shoal {
namespace {

constexpr uint64_t kDesc = 0x10000, kAvail = 0x11000, kUsed = 0x12000, kHeaders = 0x20000,
                   kStatus = 0x30000, kData = 0x100000;
constexpr uint16_t kQueue = 16;

// An image file in the test's temporary directory, removed at the end.
struct Image {
  explicit Image(uint64_t bytes, const char* name = "disk.img") {
    path = ::testing::TempDir() + name + std::to_string(::getpid());
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    EXPECT_GE(fd, 0);
    std::vector<uint8_t> bytes_in(bytes);
    for (uint64_t i = 0; i < bytes; ++i) bytes_in[i] = static_cast<uint8_t>(i * 7 + i / 512);
    EXPECT_EQ(::write(fd, bytes_in.data(), bytes), static_cast<ssize_t>(bytes));
    ::close(fd);
  }
  ~Image() { ::unlink(path.c_str()); }
  std::string path;
};

// The guest side: registers through the transport, rings in guest RAM.
class Driver {
 public:
  // Queue `queue`'s rings, headers and status bytes are 0x4000 apart from the next queue's.
  Driver(GuestRam& ram, VirtioMmio& t, uint16_t queue = 0)
      : ram_(ram),
        t_(t),
        queue_(queue),
        desc_(kDesc + 0x4000ull * queue),
        avail_(kAvail + 0x4000ull * queue),
        used_(kUsed + 0x4000ull * queue),
        headers_(kHeaders + 0x4000ull * queue),
        status_(kStatus + 0x4000ull * queue) {}
  uint32_t reg(uint64_t off) {
    uint32_t v = 0;
    t_.read(off, {reinterpret_cast<uint8_t*>(&v), 4});
    return v;
  }
  void set(uint64_t off, uint32_t v) { t_.write(off, {reinterpret_cast<uint8_t*>(&v), 4}); }
  // The spec's initialization sequence with `features` (low and high words) for this queue.
  void start(uint64_t features, uint64_t desc = 0) {
    begin(features);
    setup_queue(desc);
    driver_ok();
  }
  void begin(uint64_t features) {
    set(0x70, 0);
    set(0x70, 1 | 2);
    set(0x24, 0);
    set(0x20, static_cast<uint32_t>(features));
    set(0x24, 1);
    set(0x20, static_cast<uint32_t>(features >> 32));
    set(0x70, 1 | 2 | 8);
  }
  void setup_queue(uint64_t desc = 0) {
    if (desc == 0) desc = desc_;
    set(0x30, queue_);
    set(0x38, kQueue);
    set(0x80, static_cast<uint32_t>(desc));
    set(0x84, static_cast<uint32_t>(desc >> 32));
    set(0x90, static_cast<uint32_t>(avail_));
    set(0xa0, static_cast<uint32_t>(used_));
    set(0x44, 1);
  }
  void driver_ok() { set(0x70, reg(0x70) | 4); }
  void put_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    uint8_t* d = ram_.host(desc_ + 16 * i, 16);
    std::memcpy(d, &addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
  }
  // One request: header, the data buffers (gpa, len) and a status byte; returns its status.
  uint8_t request(uint32_t type, uint64_t sector,
                  const std::vector<std::pair<uint64_t, uint32_t>>& data,
                  uint32_t* used_len = nullptr) {
    const uint16_t head = static_cast<uint16_t>((next_ * 4) % kQueue);
    uint8_t* hdr = ram_.host(headers_ + 16 * head, 16);
    std::memcpy(hdr, &type, 4);
    std::memset(hdr + 4, 0, 4);
    std::memcpy(hdr + 8, &sector, 8);
    const bool in = type == 0 || type == 8;
    uint16_t i = head;
    put_desc(i, headers_ + 16 * head, 16, 1, static_cast<uint16_t>(i + 1));
    for (const auto& [gpa, len] : data) {
      ++i;
      put_desc(i, gpa, len, static_cast<uint16_t>(1 | (in ? 2 : 0)), static_cast<uint16_t>(i + 1));
    }
    ++i;
    *ram_.host(status_ + head, 1) = 0xee;
    put_desc(i, status_ + head, 1, 2, 0);
    return submit(head, used_len, ram_.host(status_ + head, 1));
  }
  uint8_t submit(uint16_t head, uint32_t* used_len, const uint8_t* status) {
    uint8_t* avail = ram_.host(avail_, 4 + 2 * kQueue);
    std::memcpy(avail + 4 + 2 * (next_ % kQueue), &head, 2);
    ++next_;
    __atomic_store_n(reinterpret_cast<uint16_t*>(avail + 2), next_, __ATOMIC_RELEASE);
    set(0x50, queue_);
    const uint16_t* used_idx = reinterpret_cast<const uint16_t*>(ram_.host(used_ + 2, 2));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (__atomic_load_n(used_idx, __ATOMIC_ACQUIRE) != next_) {
      if (std::chrono::steady_clock::now() > deadline || (reg(0x70) & 64) != 0) return 0xff;
      std::this_thread::yield();
    }
    if (used_len)
      std::memcpy(used_len, ram_.host(used_ + 4 + 8 * ((next_ - 1) % kQueue) + 4, 4), 4);
    return *status;
  }

 private:
  GuestRam& ram_;
  VirtioMmio& t_;
  uint16_t queue_;
  uint64_t desc_, avail_, used_, headers_, status_;
  uint16_t next_ = 0;
};

struct Fixture {
  explicit Fixture(const Image& img, bool ro = false, uint16_t queues = 1) {
    auto r = GuestRam::reserve(4 << 20, 40);
    EXPECT_TRUE(r.ok());
    ram.emplace(std::move(*r));
    auto blk = VirtioBlk::open({img.path, ro}, queues);
    EXPECT_TRUE(blk.ok()) << (blk.ok() ? "" : blk.error().message());
    auto t = VirtioMmio::create(nullptr, *ram, 0xfeb00000, 16, std::move(*blk));
    EXPECT_TRUE(t.ok());
    transport = *t;
    driver.emplace(*ram, *transport);
  }
  std::optional<GuestRam> ram;
  std::shared_ptr<VirtioMmio> transport;
  std::optional<Driver> driver;
};

constexpr uint64_t kVersion1 = 1ull << 32, kFlush = 1ull << 9;

TEST(VirtioMmio, IdentifiesABlockDeviceAndRefusesLegacyDrivers) {
  Image img(1 << 20);
  Fixture f(img);
  EXPECT_EQ(f.driver->reg(0x0), 0x74726976u);
  EXPECT_EQ(f.driver->reg(0x4), 2u);
  EXPECT_EQ(f.driver->reg(0x8), 2u);
  f.driver->set(0x14, 1);
  EXPECT_EQ(f.driver->reg(0x10) & 1, 1u);  // VIRTIO_F_VERSION_1
  uint64_t capacity = 0;
  f.transport->read(0x100, {reinterpret_cast<uint8_t*>(&capacity), 8});
  EXPECT_EQ(capacity, (1u << 20) / 512);
  // Without VERSION_1, FEATURES_OK does not stick.
  f.driver->set(0x70, 3);
  f.driver->set(0x20, 0);
  f.driver->set(0x70, 3 | 8);
  EXPECT_EQ(f.driver->reg(0x70) & 8, 0u);
}

TEST(VirtioBlk, WritesAndReadsBackThroughTheQueue) {
  Image img(1 << 20);
  Fixture f(img);
  f.driver->start(kVersion1 | kFlush);
  ASSERT_EQ(f.driver->reg(0x70) & 64, 0u);
  uint8_t* data = f.ram->host(kData, 8192);
  for (int i = 0; i < 8192; ++i) data[i] = static_cast<uint8_t>(i ^ 0x5a);
  // Two 4 KiB buffers, written at sector 8, then read back into another place.
  EXPECT_EQ(f.driver->request(1, 8, {{kData, 4096}, {kData + 4096, 4096}}), 0);
  EXPECT_EQ(f.driver->request(4, 0, {}), 0);  // flush
  uint32_t used = 0;
  EXPECT_EQ(f.driver->request(0, 8, {{kData + 65536, 8192}}, &used), 0);
  EXPECT_EQ(used, 8193u);
  EXPECT_EQ(std::memcmp(f.ram->host(kData + 65536, 8192), data, 8192), 0);
  // The file has it too; the sector before is untouched.
  const int fd = ::open(img.path.c_str(), O_RDONLY);
  std::vector<uint8_t> back(8192 + 512);
  ASSERT_EQ(::pread(fd, back.data(), back.size(), 7 * 512), static_cast<ssize_t>(back.size()));
  ::close(fd);
  EXPECT_EQ(std::memcmp(back.data() + 512, data, 8192), 0);
  EXPECT_EQ(back[0], static_cast<uint8_t>(7 * 512 * 7 + 7));
  EXPECT_EQ(f.transport->device().name(), "virtio-blk " + img.path);
}

TEST(VirtioBlk, ServesEveryQueueTheDriverSetUp) {
  Image img(1 << 20);
  Fixture f(img, false, 2);
  f.driver->set(0x14, 0);
  EXPECT_NE(f.driver->reg(0x10) & (1u << 12), 0u);  // VIRTIO_BLK_F_MQ
  uint16_t queues = 0;
  f.transport->read(0x100 + 34, {reinterpret_cast<uint8_t*>(&queues), 2});
  EXPECT_EQ(queues, 2);
  Driver second(*f.ram, *f.transport, 1);
  f.driver->begin(kVersion1 | (1u << 12));
  f.driver->setup_queue();
  second.setup_queue();
  f.driver->driver_ok();
  ASSERT_EQ(f.driver->reg(0x70) & 64, 0u);
  uint8_t* data = f.ram->host(kData, 4096);
  std::memset(data, 0xa5, 4096);
  // Written through queue 1, read back through queue 0, and the other way round.
  EXPECT_EQ(second.request(1, 16, {{kData, 4096}}), 0);
  EXPECT_EQ(f.driver->request(0, 16, {{kData + 8192, 4096}}), 0);
  EXPECT_EQ(std::memcmp(f.ram->host(kData + 8192, 4096), data, 4096), 0);
  std::memset(data, 0x3c, 4096);
  EXPECT_EQ(f.driver->request(1, 24, {{kData, 4096}}), 0);
  EXPECT_EQ(second.request(0, 24, {{kData + 16384, 4096}}), 0);
  EXPECT_EQ(std::memcmp(f.ram->host(kData + 16384, 4096), data, 4096), 0);
  EXPECT_EQ(f.transport->device().name(), "virtio-blk " + img.path);
}

TEST(VirtioBlk, AnswersBadRequestsWithStatusAndKeepsGoing) {
  Image img(64 << 10);
  Fixture f(img);
  f.driver->start(kVersion1);
  EXPECT_EQ(f.driver->request(0, 127, {{kData, 1024}}), 1);  // past the end: I/O error
  EXPECT_EQ(f.driver->request(0, 0, {{kData, 100}}), 1);     // not whole sectors
  EXPECT_EQ(f.driver->request(42, 0, {{kData, 512}}), 2);    // unknown type: unsupported
  EXPECT_EQ(f.driver->request(4, 0, {}), 2);                 // flush not negotiated
  uint32_t used = 0;
  EXPECT_EQ(f.driver->request(8, 0, {{kData, 20}}, &used), 0);  // GET_ID: the file name
  EXPECT_EQ(used, 21u);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(f.ram->host(kData, 20)), 8), "disk.img");
  EXPECT_EQ(f.driver->request(0, 127, {{kData, 512}}), 0);  // the last sector is fine
}

TEST(VirtioBlk, ReadOnlyDiskRefusesWrites) {
  Image img(64 << 10);
  Fixture f(img, true);
  f.driver->set(0x14, 0);
  EXPECT_NE(f.driver->reg(0x10) & (1u << 5), 0u);  // VIRTIO_BLK_F_RO offered
  f.driver->start(kVersion1 | (1u << 5));
  EXPECT_EQ(f.driver->request(1, 0, {{kData, 512}}), 1);
  EXPECT_EQ(f.driver->request(0, 0, {{kData, 512}}), 0);
}

TEST(VirtioBlk, AChainOutsideGuestRamNeedsAReset) {
  Image img(64 << 10);
  Fixture f(img);
  f.driver->start(kVersion1);
  // A data buffer past the end of the 4 MiB of RAM: the device reads nothing, writes nothing,
  // and sets DEVICE_NEEDS_RESET; a reset brings it back.
  EXPECT_EQ(f.driver->request(0, 0, {{(4 << 20) - 256, 512}}), 0xff);
  EXPECT_NE(f.driver->reg(0x70) & 64, 0u);
  EXPECT_NE(f.driver->reg(0x60) & 2, 0u);  // a configuration-change interrupt
  Driver again(*f.ram, *f.transport);
  again.start(kVersion1);
  EXPECT_EQ(f.driver->reg(0x70) & 64, 0u);
  EXPECT_EQ(again.request(0, 0, {{kData, 512}}), 0);
}

TEST(VirtioBlk, AHeadMadeAvailableTwiceNeedsAReset) {
  Image img(64 << 10);
  Fixture f(img);
  f.driver->start(kVersion1);
  // Chain 0 (a read into kData) twice in the available ring before the device used it: its
  // buffers would be read into twice at once.
  const uint32_t in = 0;
  const uint64_t sector = 0;
  uint8_t* hdr = f.ram->host(kHeaders, 16);
  std::memcpy(hdr, &in, 4);
  std::memcpy(hdr + 8, &sector, 8);
  f.driver->put_desc(0, kHeaders, 16, 1, 1);
  f.driver->put_desc(1, kData, 4096, 3, 2);
  f.driver->put_desc(2, kStatus, 1, 2, 0);
  uint8_t* avail = f.ram->host(kAvail, 8);
  const uint16_t two = 2, zero = 0;
  std::memcpy(avail + 4, &zero, 2);
  std::memcpy(avail + 6, &zero, 2);
  __atomic_store_n(reinterpret_cast<uint16_t*>(avail + 2), two, __ATOMIC_RELEASE);
  f.driver->set(0x50, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((f.driver->reg(0x70) & 64) == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  EXPECT_NE(f.driver->reg(0x70) & 64, 0u);
}

TEST(VirtioBlk, RejectsRingsOutsideGuestRam) {
  Image img(64 << 10);
  Fixture f(img);
  f.driver->start(kVersion1, (4 << 20) - 16);
  EXPECT_NE(f.driver->reg(0x70) & 64, 0u);
}

TEST(VirtioBlk, ImageProblemsAreClearErrorsNamingTheDisk) {
  auto missing = VirtioBlk::open({"/nonexistent/disk.img", false}, 1);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message().rfind("--disk /nonexistent/disk.img: ", 0), 0u)
      << missing.error().message();
  Image odd(1000, "odd.img");
  auto o = VirtioBlk::open({odd.path, false}, 1);
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.error().message().find("not a whole number of 512-byte sectors"), std::string::npos);
  Image used(4096, "used.img");
  auto first = VirtioBlk::open({used.path, false}, 1);
  ASSERT_TRUE(first.ok());
  auto second = VirtioBlk::open({used.path, false}, 1);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().message().find("in use by another process"), std::string::npos);
  EXPECT_FALSE(parse_disk_option("").ok());
  auto bad = parse_disk_option("x.img,rw");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message(), "--disk x.img: unknown option 'rw' (expected PATH[,ro])");
  auto ro = parse_disk_option("x.img,ro");
  ASSERT_TRUE(ro.ok());
  EXPECT_TRUE(ro->read_only);
}

}  // namespace
}  // namespace shoal
