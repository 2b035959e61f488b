/*
 * The test guest's ring-0 prologue. Every vCPU enters here in 32-bit protected mode with
 * EBX = hvm_start_info (PVH). Ring 0 is emulated on nested KVM (~1 M instructions/s), so this
 * does the least it can: GDT, static identity page tables, long mode, this vCPU's TSS, the
 * IDT, then iretq to CPL3 with IOPL=3 so that in/out work at CPL3 on real hardware too.
 */
#define KERNEL_CS 0x08
#define KERNEL_DS 0x10
#define USER_DS 0x18
#define USER_CS 0x20
#define TSS_SEL0 0x28
#define MAX_CPUS 256
#define KSTACK_SHIFT 12
#define USTACK_SHIFT 14
#define TSS_SHIFT 9 /* 104-byte TSS + I/O bitmap for ports 0..0x5ff + end byte */
#define IOMAP_BYTES 192
#define RFLAGS_USER 0x3002 /* IOPL=3, reserved bit 1; IF=0: no interrupts are taken */
#define IPI_VECTOR0 0x40      /* the ipi workload: vector IPI_VECTOR0 + sender */
#define IPI_VECTORS 0xb0
#define LAPIC_EOI 0xfee000b0

/* PVH entry (XEN_ELFNOTE_PHYS32_ENTRY) and shoal's "every vCPU starts here" note. */
  .section .note.pvh, "a", @note
  .p2align 2
  .long 4, 4, 18
  .asciz "Xen"
  .long pvh_entry
  .p2align 2
  .long 6, 4, 1
  .asciz "SHOAL"
  .p2align 2
  .long 1

  .section .text.entry, "ax"
  .code32
  .globl pvh_entry
pvh_entry:
  cli
  mov %ebx, %edi              /* hvm_start_info */
  mov $1, %eax
  cpuid
  mov %ecx, cpl0_cpuid1_ecx   /* what ring 0 sees, for the cpuid workload */
  shr $24, %ebx
  mov %ebx, %esi              /* initial APIC ID = vCPU index */
  cmp $MAX_CPUS, %esi
  jae 1f
  lgdt gdt_desc
  mov %cr4, %eax
  or $0x620, %eax             /* PAE, OSFXSR, OSXMMEXCPT */
  mov %eax, %cr4
  mov $pml4, %eax
  mov %eax, %cr3
  mov $0xC0000080, %ecx       /* EFER.LME */
  rdmsr
  or $0x100, %eax
  wrmsr
  mov %cr0, %eax
  or $0x80000001, %eax        /* PG, PE */
  mov %eax, %cr0
  ljmp $KERNEL_CS, $long_entry
1: hlt
  jmp 1b

  .code64
long_entry:
  mov $KERNEL_DS, %ax
  mov %ax, %ds
  mov %ax, %es
  mov %ax, %ss
  xor %eax, %eax
  mov %ax, %fs
  mov %ax, %gs
  mov %edi, %edi              /* upper halves are undefined after the mode switch */
  mov %esi, %esi
  /* Kernel stack: kstacks + (id + 1) << KSTACK_SHIFT. */
  lea 1(%rsi), %rcx
  shl $KSTACK_SHIFT, %rcx
  add $kstacks, %rcx
  mov %rcx, %rsp
  /* This vCPU's TSS: RSP0 for exceptions taken at CPL3, and an all-zero (all-allowed) I/O
   * bitmap for ports 0..0x5ff. IOPL=3 alone would do on hardware, but the nested PVM
   * hypervisor drops IOPL for user mode and then consults this bitmap. */
  mov %rsi, %rbx
  shl $TSS_SHIFT, %rbx
  add $tss_array, %rbx
  mov %rsp, 4(%rbx)
  movw $104, 102(%rbx)
  movb $0xff, 104 + IOMAP_BYTES(%rbx)
  /* Its 16-byte descriptor at GDT offset TSS_SEL0 + id * 16, type 0x89, limit covering the
   * bitmap and its end byte. */
  mov %rsi, %rdx
  shl $4, %rdx
  add $(gdt + TSS_SEL0), %rdx
  mov %rbx, %rcx
  and $0xffffff, %rcx
  shl $16, %rcx
  mov %rbx, %r8
  shr $24, %r8
  shl $56, %r8
  or %r8, %rcx
  movabs $(0x0000890000000000 + 104 + IOMAP_BYTES), %r8
  or %r8, %rcx
  mov %rcx, (%rdx)
  movq $0, 8(%rdx)
  sub $gdt, %rdx
  ltr %dx
  /* vCPU 0 builds the IDT; the others wait for it rather than write the same page (in a pod,
   * a page several hosts write moves between them at every store). */
  mov %rdi, %r12              /* build_idt clobbers rdi */
  test %esi, %esi
  jnz 5f
  call build_idt
  movl $1, idt_ready
5: cmpl $0, idt_ready
  je 5b
  lidt idt_desc
  mov %r12, %rdi
  /* User stack: ustacks + (id + 1) << USTACK_SHIFT, 16-byte aligned. */
  lea 1(%rsi), %rcx
  shl $USTACK_SHIFT, %rcx
  add $ustacks, %rcx
  pushq $(USER_DS | 3)
  push %rcx
  pushq $RFLAGS_USER
  pushq $(USER_CS | 3)
  pushq $user_entry
  iretq

/* IDT: 32 exception gates, the ipi workload's gates and the spurious vector's. */
build_idt:
  mov $idt, %rdi
  mov $exception_stubs, %rdx
  mov $0x8e00, %r10           /* present, DPL0, 64-bit interrupt gate */
  xor %ecx, %ecx
2: call set_gate
  add $16, %rdi
  add $16, %rdx
  inc %ecx
  cmp $32, %ecx
  jb 2b
  mov $(idt + IPI_VECTOR0 * 16), %rdi
  mov $ipi_stubs, %rdx
  mov $0x8e00, %r10
  xor %ecx, %ecx
3: call set_gate
  add $16, %rdi
  add $16, %rdx
  inc %ecx
  cmp $IPI_VECTORS, %ecx
  jb 3b
  mov $(idt + 0xff * 16), %rdi
  mov $spurious_interrupt, %rdx
  call set_gate
  ret

/* The 16-byte gate at (rdi) to handler rdx, type/attribute word r10; clobbers r8, r9. */
set_gate:
  mov %rdx, %r8
  and $0xffff, %r8
  or $(KERNEL_CS << 16), %r8
  mov %r10, %r9
  shl $32, %r9
  or %r9, %r8
  mov %rdx, %r9
  shr $16, %r9
  and $0xffff, %r9
  shl $48, %r9
  or %r9, %r8
  mov %r8, (%rdi)
  mov %rdx, %r9
  shr $32, %r9
  mov %r9, 8(%rdi)
  ret

spurious_interrupt:
  iretq                       /* not in service: no EOI */

/* The ipi workload's vectors: count one more from sender (vector - IPI_VECTOR0) in this vCPU's
 * row of ipi_received, EOI, return. This vCPU's index is its kernel stack's: (rsp - kstacks)
 * >> KSTACK_SHIFT. */
  .p2align 4
ipi_stubs:
  .set vec, IPI_VECTOR0
  .rept IPI_VECTORS
  .p2align 4
  pushq $vec
  jmp ipi_common
  .set vec, vec + 1
  .endr
ipi_common:
  push %rax
  push %rcx
  mov 16(%rsp), %rax
  sub $IPI_VECTOR0, %rax
  mov %rsp, %rcx
  sub $kstacks, %rcx
  shr $KSTACK_SHIFT, %rcx
  shl $12, %rcx               /* a 4 KiB row per vCPU */
  lea ipi_received(%rcx, %rax, 8), %rax
  lock incq (%rax)
  mov $LAPIC_EOI, %eax
  movl $0, (%rax)
  pop %rcx
  pop %rax
  add $8, %rsp
  iretq

/* One 16-byte stub per vector; vectors without an error code push a zero one. */
  .p2align 4
exception_stubs:
  .set vec, 0
  .rept 32
  .p2align 4
  .if (vec == 8) || (vec >= 10 && vec <= 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
  .else
  pushq $0
  .endif
  pushq $vec
  jmp exception_common
  .set vec, vec + 1
  .endr

/* Stack: vector, error code, rip, cs, rflags, rsp, ss. Report, then stop the VM; except the
 * #UD of cpl3_enable_interrupts, which returns past its ud2 with IF set. */
exception_common:
  cmpq $6, 0(%rsp)
  jne 6f
  cmpq $cpl3_enable_interrupts, 16(%rsp)
  jne 6f
  addq $2, 16(%rsp)
  orq $0x200, 32(%rsp)
  add $16, %rsp
  iretq
6:
  mov 0(%rsp), %rdi
  mov 8(%rsp), %rsi
  mov 16(%rsp), %rdx
  mov 24(%rsp), %rcx
  mov 32(%rsp), %r8
  and $-16, %rsp
  call guest_exception
3: hlt
  jmp 3b

/* CPL3 code turns IF on by calling this (the ipi workload): CPL3 cannot set IF itself (the
 * nested PVM host drops IOPL for user mode, and answers `int $n` from CPL3 with #UD), so it
 * traps to CPL0 with a #UD that exception_common recognises by its address. */
  .globl cpl3_enable_interrupts
cpl3_enable_interrupts:
  ud2
  ret

/* CPL3 from here on. */
user_entry:
  call guest_main
4: pause
  jmp 4b

  .section .data
  .globl cpl0_cpuid1_ecx
cpl0_cpuid1_ecx:
  .long 0
  .p2align 4
gdt:
  .quad 0
  .quad 0x00af9a000000ffff  /* 0x08 kernel code, 64-bit */
  .quad 0x00cf92000000ffff  /* 0x10 kernel data */
  .quad 0x00cff2000000ffff  /* 0x18 user data, DPL3 */
  .quad 0x00affa000000ffff  /* 0x20 user code, 64-bit, DPL3 */
  .fill MAX_CPUS * 2, 8, 0  /* 0x28: one 16-byte TSS descriptor per vCPU */
gdt_end:
gdt_desc:
  .word gdt_end - gdt - 1
  .quad gdt
  .p2align 4
idt_desc:
  .word 256 * 16 - 1
  .quad idt
idt_ready:
  .long 0

/* Identity map of 0..4 GiB with 2 MiB user-accessible pages, built at assembly time. The
 * accessed and dirty bits are set already: otherwise the CPU sets them, and in a pod every
 * such write to a page-table page would take the page away from the other hosts. */
  .section .data.pagetables, "aw"
  .p2align 12
pml4:
  .quad pdpt + 0x27
  .fill 511, 8, 0
  .globl pdpt  /* guest/remote_walk.c hooks a directory of its own into entry 4 */
pdpt:
  .quad pd + 0x27
  .quad pd + 0x1000 + 0x27
  .quad pd + 0x2000 + 0x27
  .quad pd + 0x3000 + 0x27
  .fill 508, 8, 0
pd:
  .set page, 0
  .rept 2048
  .quad (page << 21) | 0xe7
  .set page, page + 1
  .endr

  .section .bss
  .p2align 12
idt:
  .skip 256 * 16
  .p2align 12
kstacks:
  .skip MAX_CPUS << KSTACK_SHIFT
ustacks:
  .skip MAX_CPUS << USTACK_SHIFT
tss_array:
  .skip MAX_CPUS << TSS_SHIFT
