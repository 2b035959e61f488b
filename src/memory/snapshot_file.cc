#include "memory/snapshot_file.hpp"

#include <fcntl.h>
#include <lz4.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "shoal/crc32c.hpp"

namespace shoal {

namespace {

Status read_exact(int fd, void* to, uint64_t bytes, uint64_t offset, const std::string& what) {
  auto* p = static_cast<uint8_t*>(to);
  while (bytes > 0) {
    const ssize_t n = pread(fd, p, bytes, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(what);
    if (n == 0) return Error(what + ": the file ends early");
    p += n;
    bytes -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<SnapshotFile>> SnapshotFile::open(const std::string& path) {
  std::unique_ptr<SnapshotFile> f(new SnapshotFile());
  f->path_ = path;
  f->fd_ = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!f->fd_.valid()) return errno_error("snapshot " + path);
  struct stat st {};
  if (fstat(f->fd_.get(), &st) < 0) return errno_error("snapshot " + path + ": fstat");
  if (!S_ISREG(st.st_mode)) return Error("snapshot " + path + ": not a regular file");
  f->file_bytes_ = static_cast<uint64_t>(st.st_size);
  const std::string what = "snapshot " + path;
  uint8_t head[kSnapshotHeaderBytes] = {};
  const uint64_t head_bytes = std::min<uint64_t>(sizeof head, f->file_bytes_);
  SHOAL_TRY(read_exact(f->fd_.get(), head, head_bytes, 0, what), "");
  auto h = decode_snapshot_header(head, head_bytes, f->file_bytes_);
  if (!h) return h.error().context(what);
  f->header_ = *h;
  std::vector<uint8_t> index(h->index_bytes);
  SHOAL_TRY(read_exact(f->fd_.get(), index.data(), index.size(), h->index_offset, what + ": index"),
            "");
  if (crc32c(index.data(), index.size()) != h->index_crc)
    return Error(what + ": snapshot index: CRC mismatch (corrupted)");
  auto idx = decode_snapshot_index(index, *h);
  if (!idx) return idx.error().context(what);
  f->index_ = std::move(*idx);
  f->state_.resize(h->state_bytes);
  SHOAL_TRY(read_exact(f->fd_.get(), f->state_.data(), f->state_.size(), h->state_offset,
                       what + ": state"),
            "");
  if (crc32c(f->state_.data(), f->state_.size()) != h->state_crc)
    return Error(what + ": snapshot state: CRC mismatch (corrupted)");
  const auto& ex = f->index_.extents;
  for (size_t i = 0; i < ex.size(); ++i)
    if (ex[i].kind == PageClass::kStored) f->stored_by_slot_.push_back(static_cast<uint32_t>(i));
  // Already in slot order unless the file has a working set.
  if (!std::is_sorted(f->stored_by_slot_.begin(), f->stored_by_slot_.end(),
                      [&](uint32_t a, uint32_t b) { return ex[a].first_slot < ex[b].first_slot; }))
    std::sort(f->stored_by_slot_.begin(), f->stored_by_slot_.end(),
              [&](uint32_t a, uint32_t b) { return ex[a].first_slot < ex[b].first_slot; });
  return f;
}

std::optional<uint64_t> SnapshotFile::slot_of(uint64_t page) const {
  const auto& ex = index_.extents;
  // The last extent starting at or before `page`.
  auto it = std::upper_bound(ex.begin(), ex.end(), page,
                             [](uint64_t p, const PageExtent& e) { return p < e.first_page; });
  if (it == ex.begin()) return std::nullopt;
  --it;
  if (it->kind != PageClass::kStored || page >= it->first_page + it->pages) return std::nullopt;
  return it->first_slot + (page - it->first_page);
}

uint64_t SnapshotFile::block_pages(uint64_t b) const {
  const uint64_t per = header_.pages_per_block();
  return std::min(per, header_.stored_pages - b * per);
}

void SnapshotFile::for_each_run(
    uint64_t b, const std::function<void(uint64_t page, uint64_t at, uint64_t count)>& f) const {
  const uint64_t first = b * header_.pages_per_block();
  const uint64_t end = first + block_pages(b);
  const auto& ex = index_.extents;
  // The first stored extent whose slots reach past `first`.
  auto it = std::partition_point(stored_by_slot_.begin(), stored_by_slot_.end(), [&](uint32_t i) {
    return uint64_t{ex[i].first_slot} + ex[i].pages <= first;
  });
  for (; it != stored_by_slot_.end() && ex[*it].first_slot < end; ++it) {
    const PageExtent& e = ex[*it];
    const uint64_t from = std::max<uint64_t>(first, e.first_slot);
    const uint64_t to = std::min<uint64_t>(end, uint64_t{e.first_slot} + e.pages);
    f(e.first_page + (from - e.first_slot), from - first, to - from);
  }
}

Status SnapshotFile::read_block(uint64_t b, std::span<uint8_t> out,
                                std::vector<uint8_t>& scratch) const {
  if (b >= blocks()) return Error("snapshot block " + std::to_string(b) + ": no such block");
  const BlockEntry& e = index_.blocks[b];
  const std::string what = "snapshot block " + std::to_string(b);
  if (e.codec == BlockCodec::kRaw) {
    // Straight into `out`: decode_block checks it in place.
    const uint64_t raw = block_pages(b) * kSnapshotPageBytes;
    if (out.size() < raw) return Error(what + ": buffer too small");
    SHOAL_TRY(read_exact(fd_.get(), out.data(), raw, e.offset, what), "");
    return decode_block(b, out.first(raw), out);
  }
  if (scratch.size() < e.stored_bytes) scratch.resize(lz4_bound(header_.block_bytes));
  SHOAL_TRY(read_exact(fd_.get(), scratch.data(), e.stored_bytes, e.offset, what), "");
  return decode_block(b, {scratch.data(), e.stored_bytes}, out);
}

Status SnapshotFile::decode_block(uint64_t b, std::span<const uint8_t> stored,
                                  std::span<uint8_t> out) const {
  const std::string what = "snapshot block " + std::to_string(b);
  if (b >= blocks()) return Error(what + ": no such block");
  const BlockEntry& e = index_.blocks[b];
  const uint64_t raw = block_pages(b) * kSnapshotPageBytes;
  if (out.size() < raw) return Error(what + ": buffer too small");
  if (stored.size() != e.stored_bytes)
    return Error(what + ": " + std::to_string(stored.size()) + " bytes read of " +
                 std::to_string(e.stored_bytes));
  if (crc32c(stored.data(), stored.size()) != e.crc)
    return Error(what + ": CRC mismatch (corrupted)");
  if (e.codec == BlockCodec::kRaw) {
    if (stored.size() != raw) return Error(what + ": a raw block of the wrong size");
    if (stored.data() != out.data()) std::memcpy(out.data(), stored.data(), raw);
    return {};
  }
  const int n = LZ4_decompress_safe(reinterpret_cast<const char*>(stored.data()),
                                    reinterpret_cast<char*>(out.data()),
                                    static_cast<int>(stored.size()), static_cast<int>(raw));
  if (n != static_cast<int>(raw))
    return Error(what + ": lz4 data does not decompress to " + std::to_string(raw) + " bytes");
  return {};
}

}  // namespace shoal
