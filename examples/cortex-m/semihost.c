/* Semihosting calls: see semihost.h. */
#include "semihost.h"

/* Operation numbers of the semihosting specification. */
#define SYS_WRITEC 0x03
#define SYS_WRITE0 0x04
#define SYS_GET_CMDLINE 0x15
#define SYS_EXIT 0x18
#define SYS_EXIT_EXTENDED 0x20

/* Reason code of SYS_EXIT for a normal end of the application. */
#define ADP_STOPPED_APPLICATION_EXIT 0x20026

static int32_t semihost_call(int32_t op, const void *arg)
{
    register int32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void semihost_puts(const char *s)
{
    semihost_call(SYS_WRITE0, s);
}

void semihost_putc(char c)
{
    semihost_call(SYS_WRITEC, &c);
}

void semihost_put_i32(int32_t v)
{
    char buf[12];
    char *p = buf + sizeof buf;
    /* Negate in unsigned arithmetic: INT32_MIN has no positive int32_t. */
    uint32_t u = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
    *--p = '\0';
    do {
        *--p = (char)('0' + u % 10u);
        u /= 10u;
    } while (u != 0u);
    if (v < 0) {
        *--p = '-';
    }
    semihost_puts(p);
}

void semihost_put_hex(uint32_t v)
{
    char buf[11];
    int i;
    buf[0] = '0';
    buf[1] = 'x';
    for (i = 0; i < 8; ++i) {
        buf[2 + i] = "0123456789abcdef"[(v >> (28 - 4 * i)) & 0xfu];
    }
    buf[10] = '\0';
    semihost_puts(buf);
}

int semihost_cmdline(char *buf, size_t size)
{
    /* The block the host fills: buffer address and size in, length out. */
    uint32_t block[2];
    block[0] = (uint32_t)(uintptr_t)buf;
    block[1] = (uint32_t)size;
    if (size == 0 || semihost_call(SYS_GET_CMDLINE, (const void *)block) != 0) {
        return -1;
    }
    return (int)block[1];
}

void semihost_exit(int status)
{
    if (status == 0) {
        /* The 32-bit SYS_EXIT takes the reason itself, and QEMU exits with 0. */
        semihost_call(SYS_EXIT, (const void *)(uintptr_t)ADP_STOPPED_APPLICATION_EXIT);
    } else {
        /* SYS_EXIT_EXTENDED takes a block {reason, status}: QEMU exits with status. */
        uint32_t block[2];
        block[0] = ADP_STOPPED_APPLICATION_EXIT;
        block[1] = (uint32_t)status;
        semihost_call(SYS_EXIT_EXTENDED, (const void *)block);
    }
    for (;;) {
        /* Without a host (a board running on its own), stop here. */
    }
}
