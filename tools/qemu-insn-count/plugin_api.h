/*
 * The few declarations of QEMU's TCG plugin API that insn_count.c uses, written from
 * the public API documentation (docs/devel/tcg-plugins.rst of QEMU), because Debian's
 * QEMU packages load plugins but install no plugin header.
 *
 * Only functions whose signatures are the same from QEMU 4.2 to 10.x are declared:
 * registering a translation callback, counting the instructions of a translation
 * block, an execution callback per block, an exit callback, and text output. The
 * version a plugin declares (`qemu_plugin_version`) must lie in QEMU's supported range:
 * 0..1 up to QEMU 8.x, 2..4 (or later) from QEMU 9.0 on, when the old inline-counter
 * calls were removed. The Makefile picks the value from `qemu-system-arm --version`;
 * QEMU prints the range it accepts when it refuses a plugin.
 */
#ifndef IRNN_QEMU_PLUGIN_API_H
#define IRNN_QEMU_PLUGIN_API_H

#include <stddef.h>
#include <stdint.h>

#define PLUGIN_EXPORT __attribute__((visibility("default")))

/* Handle QEMU gives each loaded plugin. */
typedef uint64_t qemu_plugin_id_t;

/* Opaque: what QEMU tells the plugin about itself (not read here). */
typedef struct qemu_info_t qemu_info_t;

/* Opaque: a translation block being translated. */
struct qemu_plugin_tb;

/* Whether a callback reads or writes the guest registers; the count needs neither. */
enum qemu_plugin_cb_flags {
    QEMU_PLUGIN_CB_NO_REGS,
    QEMU_PLUGIN_CB_R_REGS,
    QEMU_PLUGIN_CB_RW_REGS,
};

typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id,
                                               struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

/* Called for every translation block QEMU translates. */
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
                                           qemu_plugin_vcpu_tb_trans_cb_t cb);

/* Called (from the translation callback) to run cb each time the block executes. */
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb,
                                          qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags,
                                          void *userdata);

/* Number of guest instructions in a translation block. */
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);

/* Called once when the guest exits (also through semihosting SYS_EXIT). */
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb,
                                    void *userdata);

/* Writes a string through QEMU's log (stderr unless -D is given). */
void qemu_plugin_outs(const char *string);

#endif /* IRNN_QEMU_PLUGIN_API_H */
