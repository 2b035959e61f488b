#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "vcpu/vcpu_exit.hpp"

namespace shoal {
namespace {

// A fake kvm_run mapping: the struct followed by the page where KVM puts PIO data.
struct FakeRun {
  static constexpr size_t kSize = 8192;
  alignas(kvm_run) uint8_t bytes[kSize] = {};
  kvm_run& run() { return *reinterpret_cast<kvm_run*>(bytes); }
};

TEST(DecodeExit, PortOutCarriesItsData) {
  FakeRun f;
  f.run().exit_reason = KVM_EXIT_IO;
  f.run().io.direction = KVM_EXIT_IO_OUT;
  f.run().io.size = 1;
  f.run().io.port = 0x3f8;
  f.run().io.count = 3;
  f.run().io.data_offset = 4096;
  std::memcpy(f.bytes + 4096, "abc", 3);
  VcpuExit e = decode_exit(f.run(), FakeRun::kSize);
  auto* io = std::get_if<IoExit>(&e);
  ASSERT_NE(io, nullptr);
  EXPECT_EQ(io->port, 0x3f8);
  EXPECT_TRUE(io->write);
  EXPECT_EQ(io->count, 3u);
  ASSERT_EQ(io->data.size(), 3u);
  EXPECT_EQ(std::memcmp(io->data.data(), "abc", 3), 0);
  EXPECT_EQ(io->data.data(), f.bytes + 4096);  // in place: an `in` writes back into kvm_run
}

TEST(DecodeExit, PortDataOutsideTheMappingIsRejected) {
  FakeRun f;
  f.run().exit_reason = KVM_EXIT_IO;
  f.run().io.size = 4;
  f.run().io.count = 2;
  f.run().io.data_offset = FakeRun::kSize - 4;
  EXPECT_TRUE(std::holds_alternative<UnknownExit>(decode_exit(f.run(), FakeRun::kSize)));
}

TEST(DecodeExit, Mmio) {
  FakeRun f;
  f.run().exit_reason = KVM_EXIT_MMIO;
  f.run().mmio.phys_addr = 0xd0000000;
  f.run().mmio.len = 4;
  f.run().mmio.is_write = 1;
  VcpuExit e = decode_exit(f.run(), FakeRun::kSize);
  auto* m = std::get_if<MmioExit>(&e);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->address, 0xd0000000u);
  EXPECT_TRUE(m->write);
  EXPECT_EQ(m->data.size(), 4u);
  f.run().mmio.len = 9;
  EXPECT_TRUE(std::holds_alternative<UnknownExit>(decode_exit(f.run(), FakeRun::kSize)));
}

TEST(DecodeExit, SimpleReasons) {
  FakeRun f;
  f.run().exit_reason = KVM_EXIT_SHUTDOWN;
  EXPECT_TRUE(std::holds_alternative<ShutdownExit>(decode_exit(f.run(), FakeRun::kSize)));
  f.run().exit_reason = KVM_EXIT_HLT;
  EXPECT_TRUE(std::holds_alternative<HaltExit>(decode_exit(f.run(), FakeRun::kSize)));
  f.run().exit_reason = KVM_EXIT_INTR;
  EXPECT_TRUE(std::holds_alternative<InterruptedExit>(decode_exit(f.run(), FakeRun::kSize)));
  f.run().exit_reason = KVM_EXIT_SYSTEM_EVENT;
  f.run().system_event.type = KVM_SYSTEM_EVENT_RESET;
  auto e = decode_exit(f.run(), FakeRun::kSize);
  ASSERT_TRUE(std::holds_alternative<SystemEventExit>(e));
  EXPECT_EQ(std::get<SystemEventExit>(e).type, static_cast<uint32_t>(KVM_SYSTEM_EVENT_RESET));
  f.run().exit_reason = 9999;
  e = decode_exit(f.run(), FakeRun::kSize);
  ASSERT_TRUE(std::holds_alternative<UnknownExit>(e));
  EXPECT_EQ(describe_exit(e), "unhandled exit reason 9999");
}

TEST(DecodeExit, InternalErrorKeepsBoundedData) {
  FakeRun f;
  f.run().exit_reason = KVM_EXIT_INTERNAL_ERROR;
  f.run().internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
  f.run().internal.ndata = 200;  // more than the decoder keeps
  f.run().internal.data[0] = 0x1234;
  auto e = decode_exit(f.run(), FakeRun::kSize);
  auto* ie = std::get_if<InternalErrorExit>(&e);
  ASSERT_NE(ie, nullptr);
  EXPECT_EQ(ie->ndata, 4u);
  EXPECT_EQ(ie->data[0], 0x1234u);
  EXPECT_NE(describe_exit(e).find("emulation failed"), std::string::npos);
}

TEST(DescribeExit, NamesTripleFault) {
  EXPECT_EQ(describe_exit(ShutdownExit{}), "KVM_EXIT_SHUTDOWN (triple fault)");
  EXPECT_EQ(describe_exit(FailEntryExit{0x80000021, 1}),
            "KVM_EXIT_FAIL_ENTRY hardware reason 0x80000021 on cpu 1");
}

// EFAULT from KVM_RUN is what a host out of memory gives (a restored guest in the 3G test
// machine): the line says what it means.
TEST(DescribeExit, SaysWhatAnEfaultFromKvmRunMeans) {
  EXPECT_EQ(describe_exit(RunErrorExit{EFAULT}),
            "KVM_RUN: Bad address (KVM could not map guest memory: host out of memory, or a file "
            "behind guest RAM shrank)");
  EXPECT_EQ(describe_exit(RunErrorExit{EINVAL}), "KVM_RUN: Invalid argument");
}

}  // namespace
}  // namespace shoal
