/*
 * insn_count: a QEMU TCG plugin that counts the guest instructions a run executes and
 * writes the total, in decimal followed by a newline, to a file when the guest exits.
 *
 *   qemu-system-arm -M mps2-an386 -nographic \
 *       -semihosting-config enable=on,target=native \
 *       -plugin ./libinsn_count.so,outfile=count.txt -kernel fw.elf
 *
 * Without `outfile=` the count goes to QEMU's log (stderr) as `insns: N`.
 *
 * How it counts: when QEMU translates a block of guest code it tells us how many
 * instructions the block holds, and we ask to be called each time the block runs, with
 * that number as the callback's data; the callback adds it to the total. Whether QEMU
 * chains blocks, how often it retranslates them or how the host schedules its threads
 * does not change the total, so two runs of the same firmware give the same count. A
 * block left early by a fault is counted whole; the firmware under test does not fault
 * (a fault ends the run with a nonzero exit status anyway).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin_api.h"

#ifndef INSN_COUNT_API_VERSION
#error "build with -DINSN_COUNT_API_VERSION=N (the Makefile picks N for the installed QEMU)"
#endif

PLUGIN_EXPORT int qemu_plugin_version = INSN_COUNT_API_VERSION;

static uint64_t total;
static char *outfile;

static void block_ran(unsigned int vcpu_index, void *userdata)
{
    (void)vcpu_index;
    __atomic_fetch_add(&total, (uint64_t)(uintptr_t)userdata, __ATOMIC_RELAXED);
}

static void block_translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_cb(tb, block_ran, QEMU_PLUGIN_CB_NO_REGS,
                                         (void *)(uintptr_t)n);
}

static void guest_exited(qemu_plugin_id_t id, void *userdata)
{
    uint64_t n = __atomic_load_n(&total, __ATOMIC_RELAXED);
    char line[64];
    (void)id;
    (void)userdata;
    if (outfile) {
        FILE *f = fopen(outfile, "w");
        if (!f || fprintf(f, "%" PRIu64 "\n", n) < 0 || fclose(f) != 0) {
            snprintf(line, sizeof line, "insn_count: cannot write the count\n");
            qemu_plugin_outs(line);
        }
    } else {
        snprintf(line, sizeof line, "insns: %" PRIu64 "\n", n);
        qemu_plugin_outs(line);
    }
}

PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                      int argc, char **argv)
{
    int i;
    (void)info;
    for (i = 0; i < argc; ++i) {
        if (strncmp(argv[i], "outfile=", 8) == 0 && argv[i][8] != '\0') {
            free(outfile);
            outfile = strdup(argv[i] + 8);
        } else {
            fprintf(stderr, "insn_count: unknown argument '%s' (expected outfile=FILE)\n",
                    argv[i]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, block_translated);
    qemu_plugin_register_atexit_cb(id, guest_exited, NULL);
    return 0;
}
