#include "memory/snapshot_writer.hpp"

#include <fcntl.h>
#include <lz4.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "shoal/clock.hpp"
#include "shoal/crc32c.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal {

namespace {

constexpr uint64_t kPage = kSnapshotPageBytes;
constexpr size_t kWriteBuffer = 8u << 20;

bool all_zero(const uint8_t* page) {
  uint64_t acc = 0;
  for (size_t i = 0; i < kPage; i += 64) {
    uint64_t w[8];
    std::memcpy(w, page + i, sizeof w);
    acc |= w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7];
  }
  return acc == 0;
}

// Buffered appends to the new file, with the offset reached.
class FileAppender {
 public:
  explicit FileAppender(int fd) : fd_(fd) { buf_.reserve(kWriteBuffer); }
  uint64_t offset() const { return written_ + buf_.size(); }
  Status append(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    buf_.insert(buf_.end(), b, b + n);
    return buf_.size() >= kWriteBuffer ? flush() : Status{};
  }
  Status flush() {
    size_t done = 0;
    while (done < buf_.size()) {
      const ssize_t n = ::write(fd_, buf_.data() + done, buf_.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_error("write");
      done += static_cast<size_t>(n);
    }
    written_ += buf_.size();
    buf_.clear();
    return {};
  }

 private:
  int fd_;
  uint64_t written_ = 0;
  std::vector<uint8_t> buf_;
};

struct Classified {
  std::vector<uint64_t> stored;  // pages in slot order
  std::vector<PageExtent> extents;
  uint64_t mapped = 0, zero = 0, working_set = 0;
};

const uint8_t* page_bytes(const SnapshotInput& in, uint64_t page) {
  return in.page_at ? in.page_at(page) : in.ram + page * kPage;
}

Result<Classified> classify(const SnapshotInput& in) {
  const uint64_t pages = in.ram_bytes / kPage;
  std::vector<uint64_t> zero_pages, data_pages;
  // The listed pages (a replica's shadow: an unmapped one reads as zero there), or every
  // mapped one; each read once.
  std::vector<uint64_t> listed = in.pages != nullptr ? *in.pages : in.directory->mapped_pages();
  if (in.pages != nullptr) {
    std::sort(listed.begin(), listed.end());
    listed.erase(std::unique(listed.begin(), listed.end()), listed.end());
  }
  for (uint64_t p : listed) {
    if (p >= pages) return Error("snapshot: page " + std::to_string(p) + " is past guest RAM");
    (all_zero(page_bytes(in, p)) ? zero_pages : data_pages).push_back(p);
  }
  Classified c;
  c.mapped = zero_pages.size() + data_pages.size();
  c.zero = zero_pages.size();
  // Slot order: the working set's data pages (in page order), then the other data pages.
  std::vector<uint64_t> ws = in.working_set;
  std::sort(ws.begin(), ws.end());
  ws.erase(std::unique(ws.begin(), ws.end()), ws.end());
  std::vector<uint64_t> rest;
  for (uint64_t p : data_pages)
    (std::binary_search(ws.begin(), ws.end(), p) ? c.stored : rest).push_back(p);
  c.working_set = c.stored.size();
  c.stored.insert(c.stored.end(), rest.begin(), rest.end());
  std::vector<uint64_t> slot_of_page;  // parallel to data_pages
  slot_of_page.resize(data_pages.size());
  for (uint64_t s = 0; s < c.stored.size(); ++s) {
    auto it = std::lower_bound(data_pages.begin(), data_pages.end(), c.stored[s]);
    slot_of_page[static_cast<size_t>(it - data_pages.begin())] = s;
  }
  // Extents in page order: merge neighbours of one class (stored: with consecutive slots).
  size_t zi = 0, di = 0;
  while (zi < zero_pages.size() || di < data_pages.size()) {
    const bool zero =
        di == data_pages.size() || (zi < zero_pages.size() && zero_pages[zi] < data_pages[di]);
    const uint64_t page = zero ? zero_pages[zi++] : data_pages[di];
    const uint64_t slot = zero ? 0 : slot_of_page[di++];
    PageExtent* last = c.extents.empty() ? nullptr : &c.extents.back();
    const PageClass kind = zero ? PageClass::kZero : PageClass::kStored;
    if (last != nullptr && last->kind == kind && last->first_page + last->pages == page &&
        last->pages < UINT32_MAX && (zero || last->first_slot + last->pages == slot)) {
      ++last->pages;
    } else {
      c.extents.push_back(
          PageExtent{static_cast<uint32_t>(page), 1, static_cast<uint32_t>(slot), kind});
    }
  }
  if (c.extents.size() > kMaxSnapshotExtents)
    return Error("snapshot: " + std::to_string(c.extents.size()) + " extents, at most " +
                 std::to_string(kMaxSnapshotExtents) + " fit the format");
  return c;
}

}  // namespace

Result<SnapshotWriteStats> write_snapshot(const std::string& path, const SnapshotInput& in) {
  if ((in.directory == nullptr && in.pages == nullptr) || (in.ram == nullptr && !in.page_at))
    return Error("snapshot: no guest memory to save");
  if (in.state.size() > kMaxSnapshotStateBytes)
    return Error("snapshot: machine state of " + std::to_string(in.state.size()) + " bytes");
  SnapshotWriteStats stats;
  const uint64_t t0 = monotonic_ns();
  auto c = classify(in);
  if (!c) return c.error();
  stats.scan_ns = monotonic_ns() - t0;

  const std::string tmp = path + ".partial";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) return errno_error("snapshot " + tmp);
  auto fail = [&](const Error& e) -> Error {
    ::unlink(tmp.c_str());
    return e.context("snapshot " + path);
  };
  FileAppender out(fd.get());
  std::vector<uint8_t> zeros(kSnapshotHeaderBytes);
  if (Status s = out.append(zeros.data(), zeros.size()); !s.ok()) return fail(s.error());

  SnapshotHeader h;
  h.ram_bytes = in.ram_bytes;
  h.vcpus = in.vcpus;
  h.block_bytes = in.block_bytes;
  h.stored_pages = c->stored.size();
  h.working_set_pages = c->working_set;
  SnapshotIndex index;
  index.extents = std::move(c->extents);
  const uint64_t per = h.pages_per_block();
  std::vector<uint8_t> raw(h.block_bytes), packed(lz4_bound(h.block_bytes));
  for (uint64_t first = 0; first < c->stored.size(); first += per) {
    const uint64_t n = std::min<uint64_t>(per, c->stored.size() - first);
    for (uint64_t i = 0; i < n; ++i)
      std::memcpy(raw.data() + i * kPage, page_bytes(in, c->stored[first + i]), kPage);
    const int raw_bytes = static_cast<int>(n * kPage);
    const int z = LZ4_compress_default(reinterpret_cast<const char*>(raw.data()),
                                       reinterpret_cast<char*>(packed.data()), raw_bytes,
                                       static_cast<int>(packed.size()));
    BlockEntry b;
    b.offset = out.offset();
    const bool use_lz4 = z > 0 && z < raw_bytes;
    b.codec = use_lz4 ? BlockCodec::kLz4 : BlockCodec::kRaw;
    const uint8_t* data = use_lz4 ? packed.data() : raw.data();
    b.stored_bytes = static_cast<uint32_t>(use_lz4 ? z : raw_bytes);
    b.crc = crc32c(data, b.stored_bytes);
    if (Status s = out.append(data, b.stored_bytes); !s.ok()) return fail(s.error());
    stats.compressed_bytes += b.stored_bytes;
    index.blocks.push_back(b);
  }
  h.state_offset = out.offset();
  h.state_bytes = in.state.size();
  h.state_crc = crc32c(in.state.data(), in.state.size());
  if (Status s = out.append(in.state.data(), in.state.size()); !s.ok()) return fail(s.error());
  const std::vector<uint8_t> idx = encode_snapshot_index(index);
  h.index_offset = out.offset();
  h.index_bytes = idx.size();
  h.index_crc = crc32c(idx.data(), idx.size());
  if (Status s = out.append(idx.data(), idx.size()); !s.ok()) return fail(s.error());
  if (Status s = out.flush(); !s.ok()) return fail(s.error());
  stats.file_bytes = out.offset();
  // The header last: until it is written the file is not a snapshot.
  const std::vector<uint8_t> head = encode_snapshot_header(h);
  if (pwrite(fd.get(), head.data(), head.size(), 0) != static_cast<ssize_t>(head.size()))
    return fail(errno_error("write header"));
  if (fdatasync(fd.get()) < 0) return fail(errno_error("fdatasync"));
  if (Status s = rename_durably(tmp, path); !s.ok()) return fail(s.error());
  stats.mapped_pages = c->mapped;
  stats.zero_pages = c->zero;
  stats.stored_pages = h.stored_pages;
  stats.working_set_pages = h.working_set_pages;
  stats.write_ns = monotonic_ns() - t0 - stats.scan_ns;
  return stats;
}

Status rename_durably(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) < 0) return errno_error("rename " + from);
  // The new name is durable once its directory is synced.
  const size_t slash = to.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : to.substr(0, slash);
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd.valid() || fsync(dir_fd.get()) < 0) return errno_error("sync " + dir);
  return {};
}

}  // namespace shoal
