// The single host's fault thread: reads userfaultfd MISSING fault events on guest RAM and has
// the page's source serve each one: the snapshot file for a restored page not yet installed,
// the DormantServer for every other. Errors that would leave a vCPU waiting forever go to
// `on_fatal`, which stops the VM.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>

#include "memory/dormant_server.hpp"
#include "memory/snapshot_source.hpp"
#include "memory/working_set.hpp"
#include "shoal/unique_fd.hpp"

namespace shoal {

class FaultServer {
 public:
  using Target = DormantServer::Target;

  // `budget_bytes` (0: none) bounds present guest pages where no pool enforces it (COPY).
  // With `snapshot` (a restore), the pages it still has to install are its to serve. With
  // `working_set`, every fault is reported to it, and write-protect faults are its to resolve.
  FaultServer(const Userfaultfd& uffd, Target ram, PageDirectory& directory, ZeroPool* pool,
              FaultServing serving, std::function<void(const Error&)> on_fatal,
              uint64_t budget_bytes = 0, SnapshotSource* snapshot = nullptr,
              WorkingSetTracker* working_set = nullptr);
  FaultServer(const FaultServer&) = delete;
  FaultServer& operator=(const FaultServer&) = delete;
  ~FaultServer();

  Status start();
  void stop();
  const FaultServerStats& stats() const;
  // How long the handler has been busy with one fault, 0 when idle (for the stuck watchdog).
  uint64_t busy_ns() const;

 private:
  void loop();

  const Userfaultfd& uffd_;
  Target ram_;
  PageDirectory& dir_;
  ZeroPool* pool_;
  FaultServing serving_;
  uint64_t budget_bytes_;
  std::function<void(const Error&)> on_fatal_;
  SnapshotSource* snapshot_;
  WorkingSetTracker* working_set_;
  std::unique_ptr<DormantServer> server_;
  UniqueFd stop_fd_;
  std::thread thread_;
  std::atomic<uint64_t> busy_since_ns_{0};
};

}  // namespace shoal
