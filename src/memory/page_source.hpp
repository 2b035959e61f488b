// Where the contents of a guest page that is not mapped on this host come from. One fault
// thread per host reads userfaultfd (FaultServer on a single host, CoherentMemory in a pod),
// finds the faulting page's source and asks it to serve the fault:
//
//   source            pages                                   how
//   DormantServer     dormant: never touched, or discarded    zeros from the pool, in adaptive
//                                                             batches with prefetch
//   remote home       homed or held by another pod host       a request over the mesh; the
//                     (CoherentMemory's RemoteHome)           grant installs it later
//   snapshot file     saved in a snapshot (the snapshot       read and install its block
//                     issue adds it)
//
// A source installs the page (and any neighbours it chooses) and wakes the waiting vCPU, or
// starts fetching it and returns: serve_fault never waits on another host, so one slow source
// cannot stall the faults the others serve.
#pragma once

#include <cstdint>

#include "shoal/status.hpp"

namespace shoal {

// What a vCPU wants of a page: a read maps it (in a pod, as a shared copy), a write owns it.
enum class Access : uint8_t { kNone = 0, kRead = 1, kWrite = 2 };

class PageSource {
 public:
  virtual ~PageSource() = default;
  // For errors and statistics: "zero pool", "remote home".
  virtual const char* name() const = 0;
  // A vCPU faulted on `page` (an index into guest RAM) wanting `access`, and this host does
  // not have the page mapped with that access. Called on the fault thread only. An error
  // means the waiting vCPU cannot be served: the machine (or pod) stops.
  virtual Status serve_fault(uint64_t page, Access access) = 0;
};

}  // namespace shoal
