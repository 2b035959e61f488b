#include "memory/replica_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

namespace shoal {

namespace {

constexpr uint64_t kPage = kSnapshotPageBytes;

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// A rename is durable once the directory holding it is synced.
Status sync_dir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return errno_error(dir);
  if (fsync(fd.get()) < 0) return errno_error(dir + ": fsync");
  return {};
}

Status write_all_at(int fd, const uint8_t* p, uint64_t bytes, uint64_t offset) {
  while (bytes > 0) {
    const ssize_t n = pwrite(fd, p, bytes, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return errno_error("write memory.img");
    p += n;
    bytes -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return {};
}

}  // namespace

bool is_replica_dir(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return false;
  const ReplicaPaths p(path);
  return exists(p.state) || exists(p.journal);
}

Result<ReplicaStore> ReplicaStore::create(const std::string& dir, uint64_t ram_bytes) {
  const std::string what = "--replica " + dir;
  if (::mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) return errno_error(what);
  if (is_replica_dir(dir))
    return Error(what + ": holds a replica already (restore it with --restore " + dir +
                 ", or remove it)");
  ReplicaPaths paths(dir);
  UniqueFd image(::open(paths.image.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!image.valid()) return errno_error(what + ": memory.img");
  if (ftruncate(image.get(), static_cast<off_t>(ram_bytes)) < 0)
    return errno_error(what + ": memory.img: ftruncate");
  return ReplicaStore(std::move(paths), std::move(image));
}

Status apply_checkpoint(const SnapshotFile& c, int image_fd) {
  for (const PageExtent& e : c.index().extents) {
    if (e.kind != PageClass::kZero) continue;
    // Zero now (discarded, or written with zeros): a hole reads as zero and costs nothing.
    if (fallocate(image_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  static_cast<off_t>(uint64_t{e.first_page} * kPage),
                  static_cast<off_t>(uint64_t{e.pages} * kPage)) < 0) {
      static const std::vector<uint8_t> zeros(1u << 20);  // written a MiB at a time
      for (uint64_t at = uint64_t{e.first_page} * kPage, end = at + uint64_t{e.pages} * kPage;
           at < end; at += zeros.size())
        SHOAL_TRY(
            write_all_at(image_fd, zeros.data(), std::min<uint64_t>(zeros.size(), end - at), at),
            "");
    }
  }
  std::vector<uint8_t> block(c.header().block_bytes), scratch;
  for (uint64_t b = 0; b < c.blocks(); ++b) {
    SHOAL_TRY(c.read_block(b, block, scratch), "");
    Status s;
    c.for_each_run(b, [&](uint64_t page, uint64_t at, uint64_t count) {
      if (s.ok())
        s = write_all_at(image_fd, block.data() + at * kPage, count * kPage, page * kPage);
    });
    if (!s.ok()) return s.error();
  }
  if (fdatasync(image_fd) < 0) return errno_error("memory.img: fdatasync");
  return {};
}

Result<SnapshotWriteStats> ReplicaStore::commit(const SnapshotInput& in) {
  auto stats = write_snapshot(paths_.journal, in);  // synced, and renamed into place whole
  if (!stats) return stats.error();
  SHOAL_TRY(sync_dir(paths_.dir), "replica");
  auto journal = SnapshotFile::open(paths_.journal);
  if (!journal) return journal.error().context("replica");
  SHOAL_TRY(apply_checkpoint(**journal, image_.get()), "replica: apply the journal");
  if (::rename(paths_.journal.c_str(), paths_.state.c_str()) < 0)
    return errno_error("replica: rename the journal to state.snap");
  SHOAL_TRY(sync_dir(paths_.dir), "replica");
  return stats;
}

Result<std::string> recover_replica(const std::string& dir) {
  const ReplicaPaths p(dir);
  if (exists(p.journal)) {
    auto journal = SnapshotFile::open(p.journal);
    if (!journal) return journal.error().context("replica " + dir + ": journal");
    UniqueFd image(::open(p.image.c_str(), O_RDWR | O_CLOEXEC));
    if (!image.valid()) return errno_error("replica " + dir + ": memory.img");
    SHOAL_TRY(apply_checkpoint(**journal, image.get()), "replica " + dir + ": apply the journal");
    if (::rename(p.journal.c_str(), p.state.c_str()) < 0)
      return errno_error("replica " + dir + ": rename the journal to state.snap");
    SHOAL_TRY(sync_dir(dir), "replica");
  }
  if (!exists(p.state)) return Error("replica " + dir + ": no state.snap (no checkpoint was made)");
  return p.state;
}

}  // namespace shoal
