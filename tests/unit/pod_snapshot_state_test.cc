// What a pod snapshot stores and sends (pod/pod_snapshot_state.hpp, pod/pod_messages.hpp,
// HomeDirectory's records): each round-trips, and bad input is refused with the field named.
#include <gtest/gtest.h>

#include "memory/coherence.hpp"
#include "pod/pod_messages.hpp"
#include "pod/pod_snapshot_state.hpp"

namespace shoal {
namespace {

using State = HomeDirectory::State;

PodMemberState sample() {
  PodMemberState s;
  s.pod_name = "podtest";
  s.snapshot_id = 0x1122334455667788;
  s.host = 1;
  s.hosts = 3;
  s.boot_plan = {1, 2, 3};
  s.host_of_vcpu = {0, 1, 1, 2};
  s.location_version = 9;
  s.machine.vm.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
  s.machine.vm.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
  s.slot_gpas = {0, 1ull << 30};
  VcpuState v;
  v.id = 2;
  v.regs.rip = 0xabc;
  s.machine.vcpus.push_back(v);
  v.id = 1;
  s.machine.vcpus.push_back(v);
  s.machine.port_devices = {9, 9};
  s.memory.shared = {5, 6, 100};
  s.memory.home_copies = {6, 7};
  s.memory.homes = {{5, State::kShared, 0, 0b011, true}, {8, State::kExclusive, 2, 0, false}};
  return s;
}

std::string error_of(const std::vector<uint8_t>& bytes) {
  auto s = decode_pod_member_state(bytes);
  return s.ok() ? "accepted" : s.error().message();
}

TEST(PodMemberState, RoundTrips) {
  auto s = decode_pod_member_state(encode_pod_member_state(sample()));
  ASSERT_TRUE(s.ok()) << s.error().message();
  EXPECT_EQ(s->pod_name, "podtest");
  EXPECT_EQ(s->snapshot_id, 0x1122334455667788u);
  EXPECT_EQ(s->host, 1);
  EXPECT_EQ(s->hosts, 3);
  EXPECT_EQ(s->boot_plan, (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_EQ(s->host_of_vcpu, (std::vector<uint16_t>{0, 1, 1, 2}));
  EXPECT_EQ(s->location_version, 9u);
  EXPECT_EQ(s->slot_gpas, (std::vector<uint64_t>{0, 1ull << 30}));
  ASSERT_EQ(s->machine.vcpus.size(), 2u);
  EXPECT_EQ(s->machine.vcpus[0].id, 2u);
  EXPECT_EQ(s->machine.vcpus[0].regs.rip, 0xabcu);
  EXPECT_EQ(s->machine.port_devices, (std::vector<uint8_t>{9, 9}));
  EXPECT_EQ(s->memory.shared, (std::vector<uint64_t>{5, 6, 100}));
  EXPECT_EQ(s->memory.home_copies, (std::vector<uint64_t>{6, 7}));
  ASSERT_EQ(s->memory.homes.size(), 2u);
  EXPECT_EQ(s->memory.homes[0].state, State::kShared);
  EXPECT_EQ(s->memory.homes[0].sharers, 0b011u);
  EXPECT_TRUE(s->memory.homes[0].self_copy);
  EXPECT_EQ(s->memory.homes[1].owner, 2);
}

TEST(PodMemberState, BadInputIsRefusedWithTheField) {
  auto with = [](auto change) {
    PodMemberState s = sample();
    change(s);
    return error_of(encode_pod_member_state(s));
  };
  EXPECT_NE(with([](PodMemberState& s) { s.host = 3; }).find("host 3 of 3"), std::string::npos);
  EXPECT_NE(with([](PodMemberState& s) { s.hosts = 33; }).find("at most 32"), std::string::npos);
  EXPECT_NE(with([](PodMemberState& s) {
              s.host_of_vcpu[3] = 3;
            }).find("location table: vcpu 3 on host 3 of 3"),
            std::string::npos);
  EXPECT_NE(with([](PodMemberState& s) { s.host_of_vcpu.clear(); }).find("0 vCPUs"),
            std::string::npos);
  EXPECT_NE(with([](PodMemberState& s) {
              s.machine.vcpus[0].id = 0;
            }).find("vcpu 0: vcpu 0 does not run on this host"),
            std::string::npos);
  EXPECT_NE(with([](PodMemberState& s) { s.machine.vcpus[1].id = 2; }).find("vcpu 2 twice"),
            std::string::npos);
  EXPECT_NE(with([](PodMemberState& s) {
              s.memory.shared = {6, 5};
            }).find("shared pages: page 1 out of order"),
            std::string::npos);
  EXPECT_NE(with([](PodMemberState& s) {
              s.memory.homes[1].page = 5;
            }).find("home entry 1: out of order"),
            std::string::npos);
  EXPECT_NE(with([](PodMemberState& s) {
              s.memory.homes[0].state = State::kUncached;
            }).find("home entry 0: state 0"),
            std::string::npos);
  EXPECT_NE(with([](PodMemberState& s) {
              s.pod_name.assign(300, 'x');
            }).find("pod name: 300 bytes, at most 256"),
            std::string::npos);

  std::vector<uint8_t> good = encode_pod_member_state(sample());
  auto bad = good;
  bad[0] ^= 1;
  EXPECT_NE(error_of(bad).find("not a shoal pod member's state"), std::string::npos);
  bad = good;
  bad[4] = 3;
  EXPECT_NE(error_of(bad).find("version 3, this build reads 1..2"), std::string::npos);
  // Version 1 (session 10's files) has no snapshot id: it reads as 0.
  std::vector<uint8_t> v1 = good;
  v1[4] = 1;
  v1.erase(v1.begin() + 12, v1.begin() + 20);  // magic, version, host, hosts, then the id
  auto old = decode_pod_member_state(v1);
  ASSERT_TRUE(old.ok()) << old.error().message();
  EXPECT_EQ(old->snapshot_id, 0u);
  EXPECT_EQ(old->pod_name, "podtest");
  bad = good;
  bad.push_back(0);
  EXPECT_NE(error_of(bad).find("trailing bytes"), std::string::npos);
  // Every truncation is an error, never a crash or a huge allocation.
  for (size_t n = 0; n < good.size(); ++n)
    EXPECT_NE(error_of(std::vector<uint8_t>(good.begin(), good.begin() + static_cast<long>(n))),
              "accepted")
        << n;
}

class NoPages : public LocalPages {
 public:
  void install(uint64_t, Access, CoherenceMessage::Payload, const PageBytes&) override {}
  PageBytes write_protect_and_read(uint64_t) override { return {}; }
  void drop(uint64_t) override {}
  PageBytes read(uint64_t) override { return {}; }
};

TEST(HomeDirectoryRecords, ListEverySettledEntryAndRestoreChecksEach) {
  NoPages pages;
  auto home = HomeDirectory::create(1, 1 << 20, pages);
  ASSERT_TRUE(home.ok());
  // Far apart, so the walk finds them in different pieces of the sparse array.
  for (uint64_t p : {3ull, 70000ull, 1000000ull}) ASSERT_TRUE(home->claim_uncached(p, 2));
  auto records = home->records();
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[1].page, 70000u);
  EXPECT_EQ(records[1].state, State::kExclusive);
  EXPECT_EQ(records[1].owner, 2);

  auto fresh = HomeDirectory::create(1, 1 << 20, pages);
  ASSERT_TRUE(fresh.ok());
  for (const auto& r : records) ASSERT_TRUE(fresh->restore(r, 3).ok());
  EXPECT_EQ(fresh->entry(70000).owner, 2);
  EXPECT_FALSE(fresh->can_claim(3));
  auto error = [&](HomeDirectory::Record r) {
    Status s = fresh->restore(r, 3);
    return s.ok() ? "accepted" : s.error().message();
  };
  EXPECT_NE(error(records[0]).find("given twice"), std::string::npos);
  EXPECT_NE(error({9, State::kExclusive, 3, 0, false}).find("owner 3 of 3 hosts"),
            std::string::npos);
  EXPECT_NE(error({9, State::kShared, 0, 0b1000, false}).find("sharers 0x8 not in the pod"),
            std::string::npos);
  EXPECT_NE(error({9, State::kShared, 0, 0b001, true}).find("a self copy on a host that does not"),
            std::string::npos);
  EXPECT_NE(error({1 << 20, State::kExclusive, 0, 0, false}).find("outside guest RAM"),
            std::string::npos);
  EXPECT_EQ(error({9, State::kShared, 0, 0b011, true}), "accepted");

  fresh->restore_home_copy(10, PageBytes(4096, 0));  // zeros: nothing kept
  fresh->restore_home_copy(11, PageBytes(4096, 5));
  EXPECT_EQ(fresh->home_copy_pages(), (std::vector<uint64_t>{11}));
}

TEST(PodSnapshotMessages, RoundTripAndRefuseBadInput) {
  auto req = decode_pod_snapshot_request(encode_pod_snapshot_request({true, "/var/snap"}));
  ASSERT_TRUE(req.ok()) << req.error().message();
  EXPECT_TRUE(req->stay_paused);
  EXPECT_EQ(req->dir, "/var/snap");
  EXPECT_FALSE(decode_pod_snapshot_request(encode_pod_snapshot_request({false, ""})).ok());

  SnapshotStep step;
  step.phase = SnapshotStep::Phase::kSettle;
  step.ok = false;
  step.quiet = true;
  step.id = 7;
  step.sent = 100;
  step.received = 99;
  step.version = 12;
  step.snapshot_id = 0xfeedface12345678;
  step.slot_gpas = {0, 1ull << 30};
  step.text = "why";
  auto back = decode_snapshot_step(encode_snapshot_step(net::MessageType::kSnapshotStepDone, step));
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(back->phase, SnapshotStep::Phase::kSettle);
  EXPECT_FALSE(back->ok);
  EXPECT_TRUE(back->quiet);
  EXPECT_EQ(back->id, 7u);
  EXPECT_EQ(back->sent, 100u);
  EXPECT_EQ(back->received, 99u);
  EXPECT_EQ(back->version, 12u);
  EXPECT_EQ(back->snapshot_id, 0xfeedface12345678u);
  EXPECT_EQ(back->slot_gpas, step.slot_gpas);
  EXPECT_EQ(back->text, "why");
  net::Frame f = encode_snapshot_step(net::MessageType::kSnapshotStep, step);
  f.payload[0] = 9;
  EXPECT_NE(decode_snapshot_step(f).error().message().find("phase 9"), std::string::npos);
  f = encode_snapshot_step(net::MessageType::kSnapshotStep, step);
  f.payload[40] = 0xff;  // the slot count's low byte
  EXPECT_NE(decode_snapshot_step(f).error().message().find("slots"), std::string::npos);

  // A restoring member's plan names its snapshot; a plan without the id (a version 1 file's)
  // reads as 0; anything else after the plan is refused.
  BootPlan plan;
  plan.entry = 0x1000;
  uint64_t id = 0;
  auto p = decode_boot_plan(encode_boot_plan(net::MessageType::kPodRun, plan, 42), &id);
  ASSERT_TRUE(p.ok()) << p.error().message();
  EXPECT_EQ(p->entry, 0x1000u);
  EXPECT_EQ(id, 42u);
  net::Frame short_plan = encode_boot_plan(net::MessageType::kPodRun, plan, 42);
  short_plan.payload.resize(short_plan.payload.size() - 8);
  ASSERT_TRUE(decode_boot_plan(short_plan, &id).ok());
  EXPECT_EQ(id, 0u);
  short_plan.payload.resize(short_plan.payload.size() + 3);
  EXPECT_FALSE(decode_boot_plan(short_plan, &id).ok());

  auto start = decode_pod_start(encode_pod_start({2, "spec: yaml", "/snap/dir"}));
  ASSERT_TRUE(start.ok()) << start.error().message();
  EXPECT_EQ(start->host_index, 2);
  EXPECT_EQ(start->restore_dir, "/snap/dir");
  EXPECT_EQ(start->spec_yaml, "spec: yaml");
}

}  // namespace
}  // namespace shoal
