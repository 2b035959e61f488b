#include "pod/pod_snapshot.hpp"

#include <fmt/format.h>
#include <sys/random.h>

#include <cstdio>

#include "shoal/clock.hpp"
#include "shoal/log.hpp"

namespace shoal {

namespace {

// Names one pod snapshot in every member's file. Random, so that files of two snapshots
// (of this pod or another) do not share one; never 0, which a version 1 file reads as.
uint64_t new_snapshot_id() {
  uint64_t id = 0;
  if (getrandom(&id, sizeof id, 0) != sizeof id) id = monotonic_ns() * 0x9e3779b97f4a7c15ULL;
  return id == 0 ? 1 : id;
}

}  // namespace

using net::MessageType;

PodSnapshotter::PodSnapshotter(NodeId self, std::vector<std::string> host_names, PodMesh& mesh,
                               Member member)
    : self_(self), names_(std::move(host_names)), mesh_(mesh), member_(std::move(member)) {
  answers_.resize(names_.size());
  thread_ = std::thread([this] { loop(); });
}

PodSnapshotter::~PodSnapshotter() {
  stop();
}

void PodSnapshotter::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    orders_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void PodSnapshotter::send(NodeId to, MessageType type, const SnapshotStep& step) {
  if (to == self_) return deliver(self_, type, step);
  // A failure to send ends the link, and the pod with it: the round then fails on stop_.
  (void)mesh_.send_to(to, encode_snapshot_step(type, step));
}

void PodSnapshotter::deliver(NodeId from, MessageType type, SnapshotStep step) {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    if (type == MessageType::kSnapshotStep) {
      if (from != 0) return;  // only host 0 gives orders (a member's bug: ignored)
      orders_.push_back(std::move(step));
    } else {
      if (self_ != 0 || from >= answers_.size() || step.id != next_id_) return;  // stale
      answers_[from] = std::move(step);
    }
  }
  cv_.notify_all();
}

void PodSnapshotter::loop() {
  pthread_setname_np(pthread_self(), "pod-snapshot");
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !orders_.empty(); });
    if (stop_) return;
    SnapshotStep order = std::move(orders_.front());
    orders_.pop_front();
    lock.unlock();
    send(0, MessageType::kSnapshotStepDone, perform(order));
    lock.lock();
  }
}

SnapshotStep PodSnapshotter::perform(const SnapshotStep& order) {
  SnapshotStep done;
  done.phase = order.phase;
  done.id = order.id;
  auto failed = [&](const Error& e) {
    done.ok = false;
    done.text = e.message().substr(0, kMaxSnapshotStepText);
    return done;
  };
  switch (order.phase) {
    case Phase::kPause:
      if (Status s = member_.pause(); !s.ok()) return failed(s.error());
      done.slot_gpas = member_.slot_gpas();
      done.version = member_.location_version();
      break;
    case Phase::kSettle: {
      const CoherentMemory::Quiet q = member_.quiet();
      done.quiet = q.quiet;
      done.sent = q.sent;
      done.received = q.received;
      done.version = member_.location_version();
      break;
    }
    case Phase::kSave: {
      auto saved = member_.save(order.text, order.slot_gpas, order.snapshot_id);
      if (!saved) return failed(saved.error());
      done.text = saved->substr(0, kMaxSnapshotStepText);
      break;
    }
    case Phase::kResume:
      member_.resume();
      break;
    case Phase::kCommit:
      if (Status s = member_.commit(order.text); !s.ok()) return failed(s.error());
      break;
  }
  return done;
}

Result<std::vector<SnapshotStep>> PodSnapshotter::round(SnapshotStep order,
                                                        std::chrono::seconds timeout,
                                                        bool* timed_out) {
  std::unique_lock lock(mu_);
  order.id = ++next_id_;
  for (auto& a : answers_) a.reset();
  lock.unlock();
  for (size_t n = 0; n < names_.size(); ++n)
    send(static_cast<NodeId>(n), MessageType::kSnapshotStep, order);
  lock.lock();
  auto all_in = [&] {
    for (const auto& a : answers_)
      if (!a) return false;
    return true;
  };
  if (!cv_.wait_for(lock, timeout, [&] { return stop_ || all_in(); }))
    for (size_t n = 0; n < names_.size(); ++n)
      if (!answers_[n]) {
        if (timed_out != nullptr) *timed_out = true;
        return Error("host " + names_[n] + " did not answer within " +
                     std::to_string(timeout.count()) + " s");
      }
  if (stop_) return Error("the pod stopped");
  std::vector<SnapshotStep> out;
  for (size_t n = 0; n < names_.size(); ++n) {
    if (!answers_[n]->ok) return Error("host " + names_[n] + ": " + answers_[n]->text);
    out.push_back(std::move(*answers_[n]));
  }
  return out;
}

Result<int> PodSnapshotter::settle(uint64_t version, bool quiet) {
  SnapshotStep order;
  order.phase = Phase::kSettle;
  std::optional<std::pair<uint64_t, uint64_t>> last;  // the previous settled round's totals
  for (int rounds = 1; rounds <= kMaxSettleRounds; ++rounds) {
    auto answers = round(order);
    if (!answers) return answers.error();
    bool all_quiet = true, agreed = true;
    uint64_t sent = 0, received = 0;
    for (const SnapshotStep& a : *answers) {
      all_quiet = all_quiet && a.quiet;
      agreed = agreed && a.version == version;
      sent += a.sent;
      received += a.received;
    }
    if (agreed && !quiet) return rounds;
    const bool settled = agreed && all_quiet && sent == received;
    if (settled && last && *last == std::make_pair(sent, received)) return rounds;
    last.reset();
    if (settled) last = std::make_pair(sent, received);
    std::this_thread::sleep_for(kSettleInterval);
  }
  return Error(std::string(quiet ? "the pod's memory" : "the members' location tables") +
               " did not settle after " + std::to_string(kMaxSettleRounds) + " rounds");
}

Status PodSnapshotter::pause_all() {
  if (self_ != 0) return Error("pauses go through host " + names_[0]);
  std::unique_lock busy(run_mu_, std::try_to_lock);
  if (!busy.owns_lock()) return Error("a snapshot of this pod is under way");
  if (auto agreed = settle(member_.location_version(), false); !agreed)
    return agreed.error().context("pause: location table");
  SnapshotStep order;
  order.phase = Phase::kPause;
  if (auto paused = round(order); !paused) {
    order.phase = Phase::kResume;
    (void)round(order);
    return paused.error().context("pause");
  }
  return {};
}

Status PodSnapshotter::resume_all() {
  if (self_ != 0) return Error("resumes go through host " + names_[0]);
  std::unique_lock busy(run_mu_, std::try_to_lock);
  if (!busy.owns_lock()) return Error("a snapshot of this pod is under way");
  SnapshotStep order;
  order.phase = Phase::kResume;
  auto resumed = round(order);
  if (!resumed) return resumed.error().context("resume");
  return {};
}

Result<std::string> PodSnapshotter::snapshot(const std::string& dir, bool stay_paused) {
  if (self_ != 0) return Error("snapshots go through host " + names_[0]);
  std::unique_lock busy(run_mu_, std::try_to_lock);
  if (!busy.owns_lock()) return Error("a snapshot of this pod is under way; one at a time");
  const uint64_t t0 = monotonic_ns();
  SnapshotStep order;
  auto resume = [&] {
    order.phase = Phase::kResume;
    order.slot_gpas.clear();
    order.text.clear();
    if (auto r = round(order); !r) log::warn("pod snapshot: resume: {}", r.error().message());
  };
  // Every member's location table as host 0's, before anyone decides which vCPUs are its own.
  const uint64_t version = member_.location_version();
  if (auto agreed = settle(version, false); !agreed)
    return agreed.error().context("pod snapshot: location table");
  order.phase = Phase::kPause;
  auto paused = round(order);
  if (!paused) {
    resume();
    return paused.error().context("pod snapshot: pause");
  }
  // Every member's slots, each address once.
  std::vector<uint64_t> slots;
  for (const SnapshotStep& a : *paused)
    slots.insert(slots.end(), a.slot_gpas.begin(), a.slot_gpas.end());
  std::sort(slots.begin(), slots.end());
  slots.erase(std::unique(slots.begin(), slots.end()), slots.end());

  auto settled = settle(version, true);
  if (!settled) {
    resume();
    return settled.error().context("pod snapshot: settle");
  }
  order.phase = Phase::kSave;
  order.text = dir;
  order.slot_gpas = slots;
  order.snapshot_id = new_snapshot_id();
  bool save_timed_out = false;
  auto saved = round(order, kSaveTimeout, &save_timed_out);
  if (!saved && save_timed_out) {
    // A member may still be reading its pages and home copies: resuming would change them
    // under it. The pod stops instead.
    const Error e = saved.error().context("pod snapshot: save");
    member_.fail(e);
    return e;
  }
  Status committed{};
  if (saved) {
    SnapshotStep commit;
    commit.phase = Phase::kCommit;
    commit.text = dir;
    // Renames only: a failure here (a member's directory gone, say) may leave some members'
    // new files in place and others' old ones, and says so.
    if (auto c = round(commit); !c)
      committed = c.error().context("pod snapshot: commit (the files in " + dir +
                                    " may now be of two snapshots)");
  }
  if (!stay_paused || !saved || !committed.ok()) resume();
  if (!saved) return saved.error().context("pod snapshot: save");
  if (!committed.ok()) return committed.error();
  const uint64_t t1 = monotonic_ns();
  std::string report = fmt::format(
      "pod snapshot {} (id {:016x}): {} hosts in {:.1f} ms (the guest paused throughout; "
      "settled in {} rounds), {}",
      dir, order.snapshot_id, names_.size(), static_cast<double>(t1 - t0) / 1e6, *settled,
      stay_paused ? "left paused" : "resumed");
  for (size_t n = 0; n < names_.size(); ++n) report += "\n  " + names_[n] + ": " + (*saved)[n].text;
  log::info("{}", report);
  return report;
}

}  // namespace shoal
