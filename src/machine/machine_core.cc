#include "machine/machine_core.hpp"

#include <cstdlib>
#include <cstring>

#include "arch/interrupt_sink.hpp"
#include "arch/platform_ports.hpp"
#include "arch/x86_cpu.hpp"
#include "memory/ram_slots.hpp"
#include "shoal/log.hpp"
#include "shoal/size.hpp"

namespace shoal {

VcpuEnd describe_vcpu_end(int id, const ExitAction& action, const std::string& state) {
  const std::string vcpu = "vcpu " + std::to_string(id) + ": ";
  if (const auto* f = std::get_if<ExitFail>(&action))
    return {true, false, vcpu + f->reason + " (" + state + ")"};
  if (std::holds_alternative<ExitReset>(action))
    return {false, true, vcpu + "the guest asked for a reset"};
  return {false, false, vcpu + "the guest powered off"};
}

MachineCore::MachineCore(Kvm kvm, Vm vm, GuestRam ram)
    : kvm_(std::move(kvm)), vm_(std::move(vm)), ram_(std::move(ram)) {}

MachineCore::~MachineCore() {
  stop_vcpus();
}

void MachineCore::FreeBytes::operator()(uint8_t* p) const {
  std::free(p);
}

Result<std::unique_ptr<MachineCore>> MachineCore::create(Kvm kvm, uint64_t memory_bytes,
                                                         const MachineCoreOptions& options) {
  auto vm = Vm::create(kvm);
  if (!vm) return vm.error();
  auto ram = GuestRam::reserve(memory_bytes, kvm.guest_phys_bits());
  if (!ram) return ram.error();
  std::unique_ptr<MachineCore> c(new MachineCore(std::move(kvm), std::move(*vm), std::move(*ram)));
  auto slots = RamSlots::insert_all(c->vm_, c->ram_, c->mmio_);
  if (!slots) return slots.error();
  c->ram_slots_ = std::move(*slots);
  // The slot at GPA 0 (boot tables, the kernel) before the irqchip: KVM_CREATE_IRQCHIP leaves
  // an SRCU grace period running on the VM, and the next memslot change waits for it (5-11 ms
  // here, against 0.05-0.5 ms for the same slot created first). Slots created later, on first
  // access, pay that wait only if they come within a few ms of it.
  SHOAL_TRY(c->ram_slots_.front()->ensure(0, 1), "map guest RAM");
  for (uint64_t gpa : options.early_gpas)
    for (auto& s : c->ram_slots_) SHOAL_TRY(s->ensure(gpa, 1), "map guest RAM");
  if (options.every_slot)
    for (auto& s : c->ram_slots_) SHOAL_TRY(s->ensure_all(), "map guest RAM");
  if (options.interrupt_sink) {
    c->pod_cpuid_ = without_host_local_features(c->kvm_.supported_cpuid());
    const std::vector<uint8_t> image = build_interrupt_sink();
    c->sink_memory_.reset(static_cast<uint8_t*>(std::aligned_alloc(kPageSize, image.size())));
    if (!c->sink_memory_) return Error("interrupt sink: out of memory");
    std::memcpy(c->sink_memory_.get(), image.data(), image.size());
    // The last slot id: RAM's slots count up from 0.
    SHOAL_TRY(c->vm_.set_memory_region(static_cast<uint32_t>(c->vm_.memslot_count() - 1), kSinkGpa,
                                       image.size(), c->sink_memory_.get()),
              "interrupt sink");
  }
  SHOAL_TRY(c->vm_.create_platform(), "create VM");
  return c;
}

Result<std::vector<std::shared_ptr<VirtioMmio>>> MachineCore::insert_virtio(
    std::vector<std::unique_ptr<VirtioDevice>> devices) {
  std::vector<std::shared_ptr<VirtioMmio>> transports;
  for (size_t n = 0; n < devices.size(); ++n) {
    const uint64_t base = platform::kVirtioMmioBase + n * platform::kVirtioMmioStride;
    const uint32_t gsi = platform::kVirtioMmioFirstGsi + static_cast<uint32_t>(n);
    const std::string name = devices[n]->name();
    auto t = VirtioMmio::create(&vm_, ram_, base, gsi, std::move(devices[n]));
    if (!t) return t.error();
    SHOAL_TRY(mmio_.insert(base, platform::kVirtioMmioStride, *t, name), "");
    log::info("{} at {} (GSI {})", name, format_hex(base), gsi);
    transports.push_back(std::move(*t));
  }
  return transports;
}

Status MachineCore::map_for_boot(const std::vector<uint64_t>& gpas) {
  for (auto& s : ram_slots_) {
    SHOAL_TRY(s->register_written(), "map guest RAM");
    for (uint64_t gpa : gpas) SHOAL_TRY(s->ensure(gpa, 1), "map guest RAM");
  }
  return {};
}

std::vector<uint64_t> MachineCore::slot_gpas() const {
  std::vector<uint64_t> gpas;
  for (const auto& s : ram_slots_) {
    auto some = s->created_gpas();
    gpas.insert(gpas.end(), some.begin(), some.end());
  }
  return gpas;
}

Status MachineCore::use_saved_cpuid(const std::vector<kvm_cpuid_entry2>& saved) {
  if (saved.empty()) return {};
  SHOAL_TRY(check_cpuid_features(saved, kvm_.supported_cpuid()), "restore");
  saved_cpuid_ = saved;
  return {};
}

Status MachineCore::create_vcpus(const std::vector<int>& ids, int total, const BootPlan& plan,
                                 const VcpuFinished& finished) {
  auto msrs = kvm_.msr_index_list();
  if (!msrs) return msrs.error();
  for (int id : ids) {
    auto fd = vm_.create_vcpu(id, kvm_.vcpu_mmap_size());
    if (!fd) return fd.error();
    // The boot vCPU starts at the entry point; the others wait for INIT/SIPI unless the boot
    // protocol starts them all there.
    const bool enter_now = id == 0 || plan.all_vcpus_at_entry;
    SHOAL_TRY(configure_vcpu(*fd, plan, guest_cpuid(cpuid_base(), id, total), enter_now),
              "configure vcpu " + std::to_string(id));
    auto backend = std::make_unique<KvmVcpuBackend>(std::move(*fd), kvm_.vcpu_mmap_size(), *msrs);
    vcpus_.push_back(
        std::make_unique<VcpuThread>(std::move(backend), ExitBuses{pio_, mmio_}, finished));
    if (sink_) vcpus_.back()->set_sink(sink_);
  }
  return {};
}

void MachineCore::start_vcpus() {
  for (auto& v : vcpus_) v->start();
  if (!pit_thread_.joinable())
    pit_thread_ = std::thread([this] {
      if (Status s = vm_.disable_pit_reinjection(); !s.ok())
        log::warn("PIT: {} (missed ticks stay reinjected)", s.error().message());
    });
}

void MachineCore::command_vcpus(VcpuCommand c) {
  for (auto& v : vcpus_) v->send(c);
}

void MachineCore::command_vcpus(const std::vector<int>& ids, VcpuCommand c) {
  for (int id : ids)
    if (VcpuThread* v = vcpu(id)) v->send(c);
}

VcpuThread* MachineCore::vcpu(int id) {
  for (auto& v : vcpus_)
    if (v->backend().id() == id) return v.get();
  return nullptr;
}

Status MachineCore::pause_vcpus(const std::vector<int>& ids,
                                const std::function<bool()>& giving_up) {
  command_vcpus(ids, VcpuCommand::kPause);
  for (int id : ids) {
    VcpuThread* v = vcpu(id);
    if (v == nullptr) return Error("pause: vcpu " + std::to_string(id) + " is not on this host");
    while (!v->wait_for(VcpuRunState::kPaused, std::chrono::milliseconds(100)))
      if (giving_up()) return Error("pause: the guest is stopping");
    if (v->state() != VcpuRunState::kPaused)
      return Error("pause: vcpu " + std::to_string(id) + " has stopped");
  }
  return {};
}

Result<std::vector<std::future<Status>>> MachineCore::queue_restore(
    const VmState& vm, const std::vector<uint8_t>& port_devices, std::vector<VcpuState> vcpus) {
  SHOAL_TRY(vm_.restore_state(vm), "restore VM");
  SHOAL_TRY(pio_.restore_state(port_devices), "restore");
  std::vector<std::future<Status>> done;
  for (VcpuState& s : vcpus) {
    VcpuThread* v = vcpu(static_cast<int>(s.id));
    if (v == nullptr) return Error("restore: vcpu " + std::to_string(s.id) + " is not here");
    v->send(VcpuCommand::kPause);
    done.push_back(v->restore(std::move(s)));
  }
  return done;
}

void MachineCore::stop_vcpus() {
  command_vcpus(VcpuCommand::kStop);
  for (auto& v : vcpus_) v->join();
  if (pit_thread_.joinable()) pit_thread_.join();
}

}  // namespace shoal
