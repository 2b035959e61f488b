// The command line: `shoal run ...` and `shoal --version`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "machine/run_config.hpp"

namespace shoal {

inline constexpr int kExitVmmError = 1;
inline constexpr int kExitUsage = 2;
inline constexpr uint64_t kMinGuestMemory = 4ull << 20;

// Either a RunConfig, or what to print and the exit code (0 for --help/--version, 2 for a
// usage error).
struct NodeCommand {
  std::string listen;  // HOST:PORT
  std::string secret_file;
  std::string name;        // default: the listen address
  std::string api_socket;  // the control API for this node's pod (none: not served)
  std::string log_level = "info";
};

struct PodPingCommand {
  std::string spec;
  std::string secret_file;  // default: the spec's secretFile
  int count = 3;
};

// `shoal pod up|status|down SPEC`, `shoal pod move SPEC --vcpu N --to HOST`,
// `shoal pod snapshot SPEC DIR [--stop]`, `shoal pod up SPEC --restore DIR`.
struct PodControlCommand {
  enum class Action { kUp, kStatus, kDown, kMove, kSnapshot } action = Action::kUp;
  std::string spec;
  std::string secret_file;   // default: the spec's secretFile
  int vcpu = 0;              // kMove
  std::string to_host;       // kMove: a host's name in the spec
  std::string dir;           // kSnapshot: where to write; kUp: where to restore from
  bool stay_paused = false;  // kSnapshot
};

// `shoal ctl SOCKET pause|resume|status|metrics|quit`,
// `shoal ctl SOCKET snapshot FILE [--stop] [--working-set-ms N]`.
struct CtlCommand {
  std::string socket;
  std::string command;
  std::string path;  // snapshot
  bool stop = false;
  uint32_t working_set_ms = 0;
};

struct CliOutcome {
  std::optional<RunConfig> run;
  std::optional<std::string> validate_pod_spec;  // `shoal pod validate SPEC`
  std::optional<NodeCommand> node;               // `shoal node ...`
  std::optional<PodPingCommand> pod_ping;        // `shoal pod ping SPEC`
  std::optional<PodControlCommand> pod_control;  // `shoal pod up|status|down|move SPEC`
  std::optional<CtlCommand> ctl;                 // `shoal ctl SOCKET COMMAND`
  int exit_code = 0;
  std::string message;
  // `shoal run --restore FILE`: the file, opened by main() (the guest's size and vCPUs come
  // from it, so --kernel, --memory and --vcpus are not given).
  std::string restore;
  bool restore_eager = false;
  bool restore_direct = false;
};

CliOutcome parse_cli(int argc, const char* const* argv);

// Prints "shoal: error: MESSAGE" on stderr and returns `exit_code`.
int report_error(int exit_code, const std::string& message);

}  // namespace shoal
