// Prometheus text exposition format (version 0.0.4), one metric at a time.
#pragma once

#include <sstream>

namespace shoal {

// "# HELP name help", "# TYPE name type", then "name value".
inline void append_metric(std::ostringstream& out, const char* name, const char* help, double value,
                          const char* type = "gauge") {
  out << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n"
      << name << " " << value << "\n";
}

}  // namespace shoal
