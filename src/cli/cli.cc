#include "cli/cli.hpp"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "arch/platform_ports.hpp"
#include "devices/virtio_devices.hpp"
#include "shoal/size.hpp"
#include "shoal/version.hpp"

namespace shoal {

namespace {

// "--memory 12Q: unknown size suffix 'Q' ..." style: the option first, then the problem.
std::string usage_error(const std::string& option, const std::string& problem) {
  return "shoal: error: " + option + ": " + problem;
}

std::string check_readable(const std::string& option, const std::string& path) {
  if (::access(path.c_str(), R_OK) != 0)
    return usage_error(option, path + ": " + std::strerror(errno));
  return {};
}

}  // namespace

int report_error(int exit_code, const std::string& message) {
  std::fprintf(stderr, "shoal: error: %s\n", message.c_str());
  return exit_code;
}

CliOutcome parse_cli(int argc, const char* const* argv) {
  CLI::App app{"shoal: a virtual machine monitor that runs one guest across several hosts",
               "shoal"};
  app.set_version_flag("--version", std::string("shoal ") + kVersion);
  app.require_subcommand(1);
  RunConfig cfg;
  std::string memory = "512M";
  auto* run = app.add_subcommand("run", "Boot a guest on this host");
  auto* kernel_opt =
      run->add_option("--kernel", cfg.kernel, "bzImage, or ELF kernel with a PVH entry note");
  std::string restore;
  bool restore_eager = false;
  bool restore_direct = false;
  run->add_option(
      "--restore", restore,
      "resume a snapshot (shoal ctl ... snapshot FILE) or a --replica directory instead of "
      "booting: memory is loaded lazily as the guest touches it, and in the background");
  run->add_flag("--restore-eager", restore_eager,
                "with --restore: load all memory before the guest runs (for comparison)");
  run->add_flag("--restore-direct", restore_direct,
                "with --restore: read the snapshot around the page cache (O_DIRECT), so a cold "
                "file leaves no second copy of guest memory there (slower to load in full)");
  std::string restore_image;
  run->add_option("--restore-image", restore_image,
                  "with --restore: take guest RAM from this raw image of it (mapped privately, "
                  "paged in by the kernel) instead of the snapshot's blocks (for comparison)");
  run->add_option("--replica", cfg.replica_dir,
                  "keep a storage replica of the guest in this directory (one checkpoint per "
                  "--replica-interval); after a crash, --restore DIR goes on from the last one");
  run->add_option("--replica-interval", cfg.replica_interval_ms,
                  "milliseconds between two checkpoints of --replica")
      ->check(CLI::Range(10u, 3600000u))
      ->capture_default_str();
  run->add_option("--api-socket", cfg.api_socket,
                  "serve the control API (pause, resume, status, metrics, snapshot) on this Unix "
                  "socket; see shoal ctl");
  std::vector<std::string> disks;
  run->add_option("--disk", disks,
                  "PATH[,ro]: a raw disk image (or block device) as a virtio-blk device; "
                  "repeatable")
      ->take_all();
  std::vector<std::string> nets;
  run->add_option("--net", nets,
                  "tap=NAME[,mac=MAC]: a virtio-net device on tap interface NAME (made if "
                  "missing, which needs CAP_NET_ADMIN); repeatable")
      ->take_all();
  run->add_option("--channel", cfg.channel,
                  "PATH: a virtio-console port bridged to a Unix socket shoal listens on "
                  "(the guest's /dev/hvc0)");
  run->add_option("--initrd", cfg.initrd, "initial ramdisk");
  run->add_option("--cmdline", cfg.cmdline, "kernel command line");
  run->add_option("--memory", memory, "guest RAM, e.g. 512M, 4G, 1T (bare number: MiB)")
      ->capture_default_str();
  run->add_option("--vcpus", cfg.vcpus, "number of vCPUs")->capture_default_str();
  run->add_option("--serial", cfg.serial, "where the UART at 0x3f8 goes: stdio or a file path")
      ->capture_default_str();
  std::string zero_pool = "64M", budget, serving = "batch";
  bool prefault = false;
  run->add_option("--zero-pool", zero_pool, "pre-zeroed pages kept ready for first touches")
      ->capture_default_str();
  run->add_option("--memory-budget", budget,
                  "host memory this guest may populate, guest pages plus zero pool (default: "
                  "all of the host's RAM)");
  run->add_flag("--prefault", prefault, "populate all guest memory up front (for comparison)");
  run->add_flag("--zero-pool-ready", cfg.memory_options.wait_for_full_pool,
                "fill the zero pool before the guest starts (start-up pays for it)");
  run->add_option("--fault-serving", serving,
                  "first-touch service: batch (pool + adaptive batches), single-move, "
                  "single-copy, or kernel (no userfaultfd, as QEMU does)")
      ->check(CLI::IsMember({"batch", "single-move", "single-copy", "kernel"}))
      ->capture_default_str();
  run->add_flag("--stats", cfg.print_stats, "print memory counters at exit");
  std::string on_reboot = "exit";
  run->add_option("--on-reboot", on_reboot,
                  "when the guest reboots: exit (shoal ends with 0) or restart (boot it again)")
      ->check(CLI::IsMember({"exit", "restart"}))
      ->capture_default_str();
  run->add_option("--log-level", cfg.log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();

  auto* pod = app.add_subcommand("pod", "Pods: one guest across several hosts");
  pod->require_subcommand(1);
  std::string spec_path;
  auto* validate = pod->add_subcommand("validate", "Check a pod spec and show how it resolves");
  validate->add_option("SPEC", spec_path, "pod spec (YAML)")->required();

  PodPingCommand ping_cmd;
  auto* ping =
      pod->add_subcommand("ping", "Authenticate to every host of a pod and time a round trip");
  ping->add_option("SPEC", ping_cmd.spec, "pod spec (YAML)")->required();
  ping->add_option("--secret-file", ping_cmd.secret_file,
                   "pod secret (default: the spec's secretFile)");
  ping->add_option("--count", ping_cmd.count, "round trips per host")->check(CLI::Range(1, 1000));

  PodControlCommand control_cmd;
  CLI::App* control[5] = {
      pod->add_subcommand("up", "Start a pod on its hosts and follow it (status, guest console)"),
      pod->add_subcommand("status", "Show what every host of a pod is doing"),
      pod->add_subcommand("down", "Stop a pod on every host"),
      pod->add_subcommand("move", "Move a running vCPU to another host of its pod"),
      pod->add_subcommand("snapshot", "Save a running pod: each host writes DIR/<host name>.snap")};
  control[0]->add_option("--restore", control_cmd.dir,
                         "start from a `pod snapshot` DIR instead of booting (the same hosts "
                         "restore what each saved)");
  control[3]
      ->add_option("--vcpu", control_cmd.vcpu, "the vCPU to move")
      ->required()
      ->check(CLI::Range(0, 253));
  control[3]->add_option("--to", control_cmd.to_host, "the host to move it to")->required();
  for (auto* c : control) {
    c->add_option("SPEC", control_cmd.spec, "pod spec (YAML)")->required();
    c->add_option("--secret-file", control_cmd.secret_file,
                  "pod secret (default: the spec's secretFile)");
  }
  // After SPEC: positionals are taken in the order they are added.
  control[4]
      ->add_option("DIR", control_cmd.dir, "directory every host writes its file into")
      ->required();
  control[4]->add_flag("--stop", control_cmd.stay_paused,
                       "leave the pod paused afterwards (end it with `shoal pod down`)");

  CtlCommand ctl_cmd;
  auto* ctl = app.add_subcommand("ctl", "Send a request to a running shoal's --api-socket");
  ctl->add_option("SOCKET", ctl_cmd.socket, "the --api-socket path")->required();
  ctl->add_option("COMMAND", ctl_cmd.command,
                  "pause, resume, status, metrics, snapshot, or quit (ends shoal as a power-off)")
      ->required()
      ->check(CLI::IsMember({"pause", "resume", "status", "metrics", "snapshot", "quit"}));
  ctl->add_option("FILE", ctl_cmd.path, "snapshot: the file to write");
  ctl->add_flag("--stop", ctl_cmd.stop, "snapshot: leave the guest paused afterwards");
  ctl->add_option("--working-set-ms", ctl_cmd.working_set_ms,
                  "snapshot: first record for this long the pages the guest touches, and store "
                  "them first (a restore loads them first)")
      ->check(CLI::Range(0u, 600000u));

  NodeCommand node_cmd;
  auto* node = app.add_subcommand("node", "Run this host's pod node service");
  node->add_option("--listen", node_cmd.listen, "HOST:PORT to listen on")->required();
  node->add_option("--secret-file", node_cmd.secret_file, "the pod's shared secret")->required();
  node->add_option("--name", node_cmd.name, "this node's name (default: the listen address)");
  node->add_option("--api-socket", node_cmd.api_socket,
                   "serve the control API for this node's pod on a Unix socket (mode 0600)");
  node->add_option("--log-level", node_cmd.log_level,
                   "trace, debug, info, warn, error, critical or off (trace: every remote fault "
                   "and every page given up, by offset in guest RAM)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();

  CliOutcome out;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 writes help/version to `o` (exit 0) and errors to `er`.
    std::ostringstream o, er;
    const int code = app.exit(e, o, er);
    out.exit_code = code == 0 ? 0 : kExitUsage;
    out.message = code == 0 ? o.str() : "shoal: error: " + er.str();
    while (!out.message.empty() && out.message.back() == '\n') out.message.pop_back();
    return out;
  }

  if (validate->parsed()) {
    out.validate_pod_spec = spec_path;
    return out;
  }
  for (int i = 0; i < 5; ++i)
    if (control[i]->parsed()) {
      control_cmd.action = static_cast<PodControlCommand::Action>(i);
      out.pod_control = control_cmd;
      return out;
    }
  if (ctl->parsed()) {
    if (ctl_cmd.command == "snapshot" && ctl_cmd.path.empty()) {
      out.exit_code = kExitUsage;
      out.message = usage_error("ctl snapshot", "FILE is required");
      return out;
    }
    if (ctl_cmd.command != "snapshot" &&
        (!ctl_cmd.path.empty() || ctl_cmd.stop || ctl_cmd.working_set_ms != 0)) {
      out.exit_code = kExitUsage;
      out.message =
          usage_error("ctl " + ctl_cmd.command, "takes no FILE, --stop or --working-set-ms");
      return out;
    }
    out.ctl = ctl_cmd;
    return out;
  }
  if (ping->parsed()) {
    out.pod_ping = ping_cmd;
    return out;
  }
  if (node->parsed()) {
    if (node_cmd.name.empty()) node_cmd.name = node_cmd.listen;
    out.node = node_cmd;
    return out;
  }
  auto fail = [&](std::string message) {
    out.exit_code = kExitUsage;
    out.message = std::move(message);
    return out;
  };
  auto size = parse_size(memory, MiB);
  if (!size) return fail(usage_error("--memory " + memory, size.error().message()));
  if (*size < kMinGuestMemory)
    return fail(usage_error("--memory " + memory,
                            "at least " + format_size(kMinGuestMemory) + " is needed"));
  if (*size % 4096 != 0) return fail(usage_error("--memory " + memory, "not a multiple of 4 KiB"));
  cfg.memory = *size;
  auto pool = parse_size(zero_pool, MiB);
  if (!pool) return fail(usage_error("--zero-pool " + zero_pool, pool.error().message()));
  if (*pool < 2 * MiB)
    return fail(usage_error("--zero-pool " + zero_pool, "at least 2 MiB is needed"));
  cfg.memory_options.pool_bytes = *pool;
  if (!budget.empty()) {
    auto b = parse_size(budget, MiB);
    if (!b) return fail(usage_error("--memory-budget " + budget, b.error().message()));
    if (*b == 0) return fail(usage_error("--memory-budget " + budget, "must be more than 0"));
    cfg.memory_options.budget_bytes = *b;
  } else {
    cfg.memory_options.budget_bytes = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                                      static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  }
  for (const std::string& d : disks) {
    auto disk = parse_disk_option(d);
    if (!disk) return fail("shoal: error: " + disk.error().message());
    cfg.disks.push_back(*disk);
  }
  for (const std::string& n : nets) {
    auto net = parse_net_option(n);
    if (!net) return fail("shoal: error: " + net.error().message());
    cfg.nets.push_back(*net);
  }
  const size_t virtio = VirtioDeviceOptions{cfg.disks, cfg.nets, cfg.channel}.count();
  if (virtio > platform::kVirtioMmioSlots)
    return fail(usage_error(
        "--disk", std::to_string(cfg.disks.size()) + " disks, " + std::to_string(cfg.nets.size()) +
                      " nets" + (cfg.channel.empty() ? "" : " and a --channel") + ": at most " +
                      std::to_string(platform::kVirtioMmioSlots) + " virtio devices"));
  // Virtio devices do not save their state yet: nothing that saves or restores a machine.
  const char* device_option = !cfg.disks.empty()  ? "--disk"
                              : !cfg.nets.empty() ? "--net"
                                                  : "--channel";
  if (virtio != 0 && !cfg.replica_dir.empty())
    return fail(usage_error(device_option,
                            "not with --replica yet (virtio devices do not save "
                            "their state)"));
  if (virtio != 0 && !restore.empty())
    return fail(usage_error(device_option,
                            "not with --restore yet (virtio devices do not save "
                            "their state)"));
  if (on_reboot == "restart") cfg.on_reboot = RunConfig::OnReboot::kRestart;
  if (on_reboot == "restart" && !cfg.replica_dir.empty())
    return fail(usage_error("--replica",
                            "not with --on-reboot restart yet (a new boot would need "
                            "a new replica)"));
  if (serving == "kernel") cfg.memory_options.backing = MemoryBacking::kKernel;
  if (serving == "single-move") cfg.memory_options.serving = FaultServing::kSingleMove;
  if (serving == "single-copy") cfg.memory_options.serving = FaultServing::kSingleCopy;
  if (prefault) {
    if (serving != "batch")
      return fail(usage_error("--prefault", "cannot be combined with --fault-serving " + serving));
    cfg.memory_options.backing = MemoryBacking::kPrefault;
  }
  if (cfg.vcpus < 1)
    return fail(usage_error("--vcpus " + std::to_string(cfg.vcpus), "at least 1 vCPU is needed"));
  if (!restore.empty()) {
    for (const char* given : {"--kernel", "--initrd", "--cmdline", "--memory", "--vcpus"})
      if (run->count(given) > 0)
        return fail(usage_error(given, "not with --restore: the snapshot decides the guest"));
    if (auto e = check_readable("--restore", restore); !e.empty()) return fail(e);
    if (!cfg.replica_dir.empty())
      return fail(usage_error("--replica", "not with --restore yet (restore, then start anew)"));
    if (restore_eager && !restore_image.empty())
      return fail(usage_error("--restore-eager", "not with --restore-image"));
    if (restore_direct && !restore_image.empty())
      return fail(usage_error("--restore-direct", "not with --restore-image"));
    if (!restore_image.empty())
      if (auto e = check_readable("--restore-image", restore_image); !e.empty()) return fail(e);
    out.restore = restore;
    out.restore_eager = restore_eager;
    out.restore_direct = restore_direct;
    cfg.memory_options.restore_image = restore_image;
    if (cfg.serial.empty()) return fail(usage_error("--serial", "expected stdio or a file path"));
    out.run = std::move(cfg);
    return out;
  }
  if (restore_eager) return fail(usage_error("--restore-eager", "needs --restore FILE"));
  if (restore_direct) return fail(usage_error("--restore-direct", "needs --restore FILE"));
  if (!restore_image.empty()) return fail(usage_error("--restore-image", "needs --restore FILE"));
  if (kernel_opt->count() == 0)
    return fail(usage_error("--kernel", "required (or --restore FILE)"));
  if (auto e = check_readable("--kernel", cfg.kernel); !e.empty()) return fail(e);
  if (!cfg.initrd.empty())
    if (auto e = check_readable("--initrd", cfg.initrd); !e.empty()) return fail(e);
  if (cfg.serial.empty()) return fail(usage_error("--serial", "expected stdio or a file path"));
  out.run = std::move(cfg);
  return out;
}

}  // namespace shoal
