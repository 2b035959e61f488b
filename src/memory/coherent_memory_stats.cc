// CoherentMemory's counters and latency samples, for `--stats`-style reports and benchmarks.
#include <sstream>

#include "memory/coherent_memory.hpp"

namespace shoal {

CoherentMemory::Latencies CoherentMemory::take_latencies() {
  std::lock_guard lock(latency_mu_);
  Latencies out = std::move(latencies_);
  latencies_ = {};
  return out;
}

std::string CoherentMemory::stats_report() const {
  std::ostringstream s;
  s << "faults: " << stats_.faults << " (write-protect: " << stats_.wp_faults << ")\n"
    << "dormant pages served locally: " << stats_.local_dormant_pages << "\n"
    << "dormant pages granted by another home: " << stats_.remote_dormant_pages << "\n"
    << "requests sent: " << stats_.requests_sent << "\n"
    << "messages sent/received: " << stats_.messages_sent << "/" << stats_.messages_received << "\n"
    << "page bytes sent/received: " << stats_.page_bytes_sent << "/" << stats_.page_bytes_received
    << "\n"
    << "pages given up: " << stats_.pages_given_up << "\n"
    << "recalls held back: " << stats_.held_back << "\n"
    << "holds ended by a halted vCPU: " << stats_.holds_ended_halted << "\n"
    << "pages asked for with their group: " << stats_.group_pages_asked << "\n";
  return s.str();
}

}  // namespace shoal
