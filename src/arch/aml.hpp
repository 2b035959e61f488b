// Just enough ACPI Machine Language to describe fixed legacy devices and the S5 sleep state in
// a DSDT: names, devices, scopes, integers, packages and resource-template buffers. The
// encodings are those of the ACPI spec's chapter 20 (AML grammar) and 6.4 (resource data).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace shoal::aml {

using Bytes = std::vector<uint8_t>;

// A name segment or path: "COM1", "\\_SB_", "_S5_". Segments shorter than 4 are padded with
// '_' as ASL compilers do.
Bytes name_string(const std::string& path);

// The smallest integer encoding (Zero, One, Byte, Word, DWord or QWord prefix).
Bytes integer(uint64_t value);

// A string constant ("LNRO0005").
Bytes string(const std::string& text);

// A compressed EISA ID ("PNP0501") as a DWord constant, as ASL's EisaId() makes.
Bytes eisa_id(const std::string& id);

Bytes name(const std::string& path, const Bytes& value);         // Name(path, value)
Bytes scope(const std::string& path, const Bytes& terms);        // Scope(path) { terms }
Bytes device(const std::string& path, const Bytes& terms);       // Device(path) { terms }
Bytes package(const std::vector<Bytes>& elements);               // Package() { ... }
Bytes resource_template(const std::vector<Bytes>& descriptors);  // Buffer with an end tag

// Resource descriptors for resource_template().
Bytes io_port(uint16_t base, uint8_t length);  // IO(Decode16, base, base, 1, length)
Bytes interrupt(uint32_t gsi);                 // Interrupt(ResourceConsumer, Edge, ActiveHigh)
Bytes memory32_fixed(uint32_t base, uint32_t length);  // Memory32Fixed(ReadWrite, base, length)

// The terms one after another (a term list).
Bytes concat(const std::vector<Bytes>& terms);

// A PkgLength field for a body of `body_size` bytes (the field counts itself).
Bytes pkg_length(size_t body_size);

}  // namespace shoal::aml
