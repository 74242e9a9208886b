/*
 * Startup code for Cortex-M0/M0+/M3/M4/M7/M33/M55 firmware without a C library: the
 * vector table, the reset handler (FPU on if the code uses it, .data copied from flash,
 * .bss zeroed, main called, its status passed to semihost_exit) and fault handlers that
 * report the fault over semihosting and exit with status 3 instead of hanging.
 *
 * The symbols it reads come from the linker script (ld/sections.ld):
 * __stack_top, __data_load, __data_start, __data_end, __bss_start, __bss_end.
 */
#include <stdint.h>

#include "semihost.h"

int main(void);

extern uint32_t __stack_top;
extern uint32_t __data_load;
extern uint32_t __data_start;
extern uint32_t __data_end;
extern uint32_t __bss_start;
extern uint32_t __bss_end;

void Reset_Handler(void);
void Fault_Handler(void);
void Unexpected_Handler(void);

/* Armv7-M and later have the configurable fault status registers; Armv6-M does not. */
#if defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__) || \
    defined(__ARM_ARCH_8M_MAIN__) || defined(__ARM_ARCH_8_1M_MAIN__)
#define HAVE_FAULT_STATUS 1
#endif

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SCB_CFSR (*(volatile uint32_t *)0xE000ED28u)
#define SCB_HFSR (*(volatile uint32_t *)0xE000ED2Cu)

void Reset_Handler(void)
{
    uint32_t *src = &__data_load;
    uint32_t *dst = &__data_start;

#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    /* Full access to coprocessors 10 and 11 (the FPU, and MVE on Armv8.1-M) before any
     * floating-point or vector instruction runs. */
    SCB_CPACR |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif

    /* Word copies: the linker script aligns these sections to 4 bytes. */
    while (dst < &__data_end) {
        *dst++ = *src++;
    }
    for (dst = &__bss_start; dst < &__bss_end; ++dst) {
        *dst = 0u;
    }
    semihost_exit(main());
}

void Fault_Handler(void)
{
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    semihost_puts("\nfault: exception ");
    semihost_put_i32((int32_t)(ipsr & 0x1ffu));
#ifdef HAVE_FAULT_STATUS
    semihost_puts(", CFSR ");
    semihost_put_hex(SCB_CFSR);
    semihost_puts(", HFSR ");
    semihost_put_hex(SCB_HFSR);
#endif
    semihost_puts("\n");
    semihost_exit(3);
}

void Unexpected_Handler(void)
{
    semihost_puts("\nunexpected interrupt\n");
    semihost_exit(3);
}

typedef void (*vector_t)(void);

/* The first 16 entries (the core's exceptions); the device interrupts that follow are
 * never enabled by this firmware. Entry 0 is the initial stack pointer. */
__attribute__((section(".vectors"), used)) const vector_t vectors[16] = {
    (vector_t)(uintptr_t)&__stack_top,
    Reset_Handler,
    Unexpected_Handler, /* NMI */
    Fault_Handler,      /* HardFault */
    Fault_Handler,      /* MemManage */
    Fault_Handler,      /* BusFault */
    Fault_Handler,      /* UsageFault */
    Fault_Handler,      /* SecureFault (Armv8-M) */
    0,
    0,
    0,
    Unexpected_Handler, /* SVCall */
    Unexpected_Handler, /* DebugMonitor */
    0,
    Unexpected_Handler, /* PendSV */
    Unexpected_Handler, /* SysTick */
};
