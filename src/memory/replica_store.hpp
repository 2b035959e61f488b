// A storage replica of a running guest (docs/snapshot.md, "Fast restart"), kept in a directory:
//
//   memory.img   guest RAM as a raw sparse file, page p at offset p * 4 KiB (holes read zero)
//   state.snap   the last checkpoint applied to memory.img: a snapshot file with the machine's
//                state and the pages of its interval
//   journal      a checkpoint written in full but perhaps not yet applied
//
// A checkpoint goes to `journal` first (written beside it, synced, renamed into place: only a
// whole one ever has the name), is applied to memory.img (stored pages written, zero pages
// punched out) and synced, and is then renamed to state.snap. Whatever the moment of a crash,
// memory.img plus state.snap, or plus a whole journal applied again, is the guest at one
// checkpoint: recover_replica() finishes what was under way.
#pragma once

#include <cstdint>
#include <string>

#include "memory/snapshot_file.hpp"
#include "memory/snapshot_writer.hpp"
#include "shoal/status.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal {

struct ReplicaPaths {
  std::string dir, image, state, journal;
  explicit ReplicaPaths(const std::string& d)
      : dir(d), image(d + "/memory.img"), state(d + "/state.snap"), journal(d + "/journal") {}
};

class ReplicaStore {
 public:
  // Creates DIR if needed; it must hold no replica yet. memory.img is made `ram_bytes` long.
  static Result<ReplicaStore> create(const std::string& dir, uint64_t ram_bytes);

  const ReplicaPaths& paths() const { return paths_; }
  // Writes one checkpoint (`in`: the machine's state and the interval's pages) and applies it.
  Result<SnapshotWriteStats> commit(const SnapshotInput& in);

 private:
  ReplicaStore(ReplicaPaths paths, UniqueFd image)
      : paths_(std::move(paths)), image_(std::move(image)) {}

  ReplicaPaths paths_;
  UniqueFd image_;
};

// Applies checkpoint `c` to the image open at `image_fd`, and syncs it.
Status apply_checkpoint(const SnapshotFile& c, int image_fd);

// After a crash: applies a whole journal left behind and makes it the state. Returns the path
// of the checkpoint to restore the machine's state from (memory comes from paths.image).
Result<std::string> recover_replica(const std::string& dir);

// Whether `path` is a directory holding a replica (a state.snap or a journal).
bool is_replica_dir(const std::string& path);

}  // namespace shoal
