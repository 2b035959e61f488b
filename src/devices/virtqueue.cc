#include "devices/virtqueue.hpp"

#include <atomic>
#include <cstring>
#include <string>

#include "shoal/size.hpp"

namespace shoal {

namespace {

constexpr uint16_t kDescNext = 1, kDescWrite = 2, kDescIndirect = 4;
constexpr uint16_t kUsedNoNotify = 1, kAvailNoInterrupt = 1;
constexpr uint64_t kDescBytes = 16, kUsedElemBytes = 8;

struct Desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(Desc) == kDescBytes);

// The rings' 16-bit fields are shared with the driver on another CPU: loads acquire what it
// wrote before them, stores release what the device wrote before them.
uint16_t load16(const uint8_t* p) {
  return __atomic_load_n(reinterpret_cast<const uint16_t*>(p), __ATOMIC_ACQUIRE);
}
void store16(uint8_t* p, uint16_t v) {
  __atomic_store_n(reinterpret_cast<uint16_t*>(p), v, __ATOMIC_RELEASE);
}

Error ring_error(const char* what, uint64_t gpa, uint64_t bytes) {
  return Error(std::string(what) + " at " + format_hex(gpa) + " (" + std::to_string(bytes) +
               " bytes) is not inside guest RAM or not aligned");
}

}  // namespace

Result<Virtqueue> Virtqueue::create(const GuestRam& ram, const VirtqueueAddresses& at) {
  if (at.size == 0 || at.size > kMaxSize || (at.size & (at.size - 1)) != 0)
    return Error("queue size " + std::to_string(at.size) + " is not a power of two up to " +
                 std::to_string(kMaxSize));
  Virtqueue q;
  q.ram_ = &ram;
  q.size_ = at.size;
  const uint64_t desc_bytes = kDescBytes * at.size, avail_bytes = 6 + 2ull * at.size,
                 used_bytes = 6 + kUsedElemBytes * at.size;
  q.desc_ = at.desc % 16 == 0 ? ram.host(at.desc, desc_bytes) : nullptr;
  if (q.desc_ == nullptr) return ring_error("descriptor table", at.desc, desc_bytes);
  q.avail_ = at.avail % 2 == 0 ? ram.host(at.avail, avail_bytes) : nullptr;
  if (q.avail_ == nullptr) return ring_error("available ring", at.avail, avail_bytes);
  q.used_ = at.used % 4 == 0 ? ram.host(at.used, used_bytes) : nullptr;
  if (q.used_ == nullptr) return ring_error("used ring", at.used, used_bytes);
  return q;
}

uint16_t Virtqueue::avail_idx() const {
  return load16(avail_ + 2);
}

bool Virtqueue::has_available() const {
  return avail_idx() != next_avail_;
}

bool Virtqueue::interrupt_wanted() const {
  return (load16(avail_) & kAvailNoInterrupt) == 0;
}

Result<bool> Virtqueue::pop(DescriptorChain& out) {
  const uint16_t idx = avail_idx();
  const uint16_t pending = static_cast<uint16_t>(idx - next_avail_);
  if (pending == 0) return false;
  if (pending > size_)
    return Error("the driver made " + std::to_string(pending) + " chains available on a queue of " +
                 std::to_string(size_));
  const uint16_t slot = next_avail_ % size_;
  const uint16_t head = load16(avail_ + 4 + 2 * slot);
  ++next_avail_;
  out.head = head;
  out.buffers.clear();
  uint16_t i = head;
  // A chain visits each descriptor at most once: longer means a loop.
  for (unsigned count = 0;; ++count) {
    if (i >= size_)
      return Error("chain " + std::to_string(head) + ": descriptor index " + std::to_string(i) +
                   " is outside the table of " + std::to_string(size_));
    if (count == size_) return Error("chain " + std::to_string(head) + " loops");
    Desc d;
    std::memcpy(&d, desc_ + kDescBytes * i, sizeof d);
    if (d.flags & kDescIndirect)
      return Error("chain " + std::to_string(head) +
                   ": an indirect descriptor, which was not negotiated");
    uint8_t* host = d.len == 0 ? nullptr : ram_->host(d.addr, d.len);
    if (d.len != 0 && host == nullptr)
      return Error("chain " + std::to_string(head) + ": descriptor " + std::to_string(i) +
                   " points outside guest RAM (" + format_hex(d.addr) + ", " +
                   std::to_string(d.len) + " bytes)");
    if (d.len != 0) out.buffers.push_back({host, d.len, (d.flags & kDescWrite) != 0});
    if ((d.flags & kDescNext) == 0) break;
    i = d.next;
  }
  return true;
}

void Virtqueue::push_used(uint16_t head, uint32_t written) {
  uint8_t* elem = used_ + 4 + kUsedElemBytes * (next_used_ % size_);
  const uint32_t id = head;
  std::memcpy(elem, &id, 4);
  std::memcpy(elem + 4, &written, 4);
  ++next_used_;
  store16(used_ + 2, next_used_);
}

void Virtqueue::set_notify(bool wanted) {
  store16(used_, wanted ? 0 : kUsedNoNotify);
  // The flag's store must be visible before the device's next look at the available ring (a
  // store-load order x86 keeps only with a full fence); else a driver that saw the old flag
  // skips its notify and the device sleeps on a chain it did not see.
  if (wanted) std::atomic_thread_fence(std::memory_order_seq_cst);
}

}  // namespace shoal
