
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "arch/guest_ram.hpp"
#include "arch/mptable.hpp"
#include "cli/cli.hpp"
#include "cli/machine_control.hpp"
#include "cli/pod_client.hpp"
#include "cli/pod_commands.hpp"
#include "kvm/kvm.hpp"
#include "machine/machine.hpp"
#include "memory/replica_store.hpp"
#include "memory/snapshot_file.hpp"
#include "shoal/clock.hpp"
#include "shoal/log.hpp"
#include "shoal/size.hpp"

int run_main(int argc, char** argv) {
  using namespace shoal;
  const uint64_t started_ns = monotonic_ns();
  CliOutcome cli = parse_cli(argc, argv);
  if (cli.validate_pod_spec) return validate_pod(*cli.validate_pod_spec);
  if (cli.pod_ping) return ping_pod(*cli.pod_ping);
  if (cli.pod_control) return control_pod(*cli.pod_control);
  if (cli.ctl) return control_machine(*cli.ctl);
  if (cli.node) {
    log::setup(cli.node->log_level);
    return run_node(*cli.node);
  }
  if (!cli.run) {
    std::fprintf(cli.exit_code == 0 ? stdout : stderr, "%s\n", cli.message.c_str());
    return cli.exit_code;
  }
  RunConfig& cfg = *cli.run;
  cfg.started_ns = started_ns;
  log::setup(cfg.log_level);
  if (!cli.restore.empty()) {
    std::string state_path = cli.restore;
    if (is_replica_dir(cli.restore)) {
      // A replica: finish the checkpoint a crash interrupted, then restore the state it holds
      // over its memory image (paged in by the kernel as the guest touches it).
      if (cli.restore_eager || cli.restore_direct || !cfg.memory_options.restore_image.empty())
        return report_error(kExitUsage, "--restore " + cli.restore +
                                            ": a replica is restored from its own memory image");
      auto state = recover_replica(cli.restore);
      if (!state) return report_error(kExitVmmError, state.error().message());
      state_path = *state;
      cfg.memory_options.restore_image = ReplicaPaths(cli.restore).image;
    }
    auto file = SnapshotFile::open(state_path);
    if (!file) return report_error(kExitVmmError, file.error().message());
    cfg.memory = (*file)->header().ram_bytes;
    cfg.vcpus = static_cast<int>((*file)->header().vcpus);
    cfg.memory_options.restore_from = std::move(*file);
    cfg.memory_options.restore_eager = cli.restore_eager;
    cfg.memory_options.restore_direct = cli.restore_direct;
  }

  auto kvm = Kvm::open();
  if (!kvm) return report_error(kExitVmmError, kvm.error().message());
  const int max_vcpus = std::min(kvm->max_vcpus(), kMpTableMaxVcpus);
  if (cfg.vcpus > max_vcpus)
    return report_error(kExitUsage, "--vcpus " + std::to_string(cfg.vcpus) + ": at most " +
                                        std::to_string(max_vcpus) + " on this host");
  const unsigned phys_bits = kvm->guest_phys_bits();
  const RamRegion top = GuestRam::layout(cfg.memory).back();
  if (phys_bits < 64 && top.gpa + top.size > (uint64_t{1} << phys_bits))
    return report_error(
        kExitUsage, "--memory " + format_size(cfg.memory) + ": beyond the guest's " +
                        std::to_string(phys_bits) + "-bit physical address space (" +
                        format_size((uint64_t{1} << phys_bits) - (kMmioHoleEnd - kMmioHoleStart)) +
                        " of RAM at most)");
  for (;;) {
    auto machine = Machine::create(std::move(*kvm), cfg);
    if (!machine) return report_error(kExitVmmError, machine.error().message());
    auto code = (*machine)->run();
    if (!code) return report_error(kExitVmmError, code.error().message());
    if (!(*machine)->reset_requested() || cfg.on_reboot != RunConfig::OnReboot::kRestart)
      return *code;
    if (cfg.memory_options.restore_from)
      return report_error(kExitVmmError,
                          "the restored guest asked for a reset: --on-reboot "
                          "restart needs a kernel to boot, and --restore has none");
    // A reset is a new boot from the same files: a fresh VM, RAM and devices (the old
    // machine is torn down first, so its RAM is returned before the new one is touched).
    machine->reset();
    log::info("restarting the guest (--on-reboot restart)");
    kvm = Kvm::open();
    if (!kvm) return report_error(kExitVmmError, kvm.error().message());
  }
}

int main(int argc, char** argv) {
  // Every socket write passes MSG_NOSIGNAL; this is the net under any that does not: a peer
  // that goes away must end a link or a channel with EPIPE, not the whole VMM.
  std::signal(SIGPIPE, SIG_IGN);
  // Nothing on shoal's own paths throws; this catches what a library might (spdlog, the STL
  // running out of memory) so the user still gets one line and exit code 1.
  try {
    return run_main(argc, argv);
  } catch (const std::exception& e) {
    return shoal::report_error(shoal::kExitVmmError, e.what());
  }
}
