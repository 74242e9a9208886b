/*
 * Semihosting: the program's console and exit status through the debugger, or through
 * QEMU with `-semihosting-config enable=on,target=native`. Each call is a `bkpt 0xab`
 * with the operation in r0 and its argument in r1 (Arm's semihosting specification).
 * On a board without a debugger attached, `bkpt` stops the core: replace these calls by
 * your UART driver there.
 */
#ifndef IRNN_SEMIHOST_H
#define IRNN_SEMIHOST_H

#include <stddef.h>
#include <stdint.h>

/* Writes a NUL-terminated string to the host's console. */
void semihost_puts(const char *s);

/* Writes one character to the host's console. */
void semihost_putc(char c);

/* Writes a signed decimal integer. */
void semihost_put_i32(int32_t v);

/* Writes an unsigned hexadecimal integer (0x...). */
void semihost_put_hex(uint32_t v);

/* Copies the command line the host passes (QEMU: the kernel's file name, then the
 * words of -append) into buf, NUL-terminated; returns its length, or -1. */
int semihost_cmdline(char *buf, size_t size);

/* Ends the program with an exit status (0: success); does not return. QEMU exits
 * with the same status. */
void semihost_exit(int status) __attribute__((noreturn));

#endif /* IRNN_SEMIHOST_H */
