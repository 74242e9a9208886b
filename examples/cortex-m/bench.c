/*
 * Instruction-count benchmark firmware: runs N steps of an irnn-generated model, N the
 * last number on the semihosting command line (`qemu-system-arm ... -append N`), over
 * the inputs of bench_inputs.h in a cycle, and prints nothing. Counting a run with N
 * steps and one with 0 (the QEMU plugin in tools/qemu-insn-count) gives the
 * instructions of N steps: `irnn bench --target cortex-m4` and tests/cortex_m.rs do so.
 *
 * Built like main.c (-DIRNN_HEADER, -DIRNN_PREFIX, -DIRNN_PREFIX_UPPER,
 * -DIRNN_TOKEN_INPUT), with a bench_inputs.h that defines BENCH_LEN and
 * `static const bench_input_t bench_inputs[]`: BENCH_LEN token ids, or BENCH_LEN rows of
 * INPUT_SIZE int8 features.
 */
#include <stdint.h>

#include "semihost.h"
#include IRNN_HEADER

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(IRNN_PREFIX, name)
#define K(name) CAT(IRNN_PREFIX_UPPER, name)

#ifdef IRNN_TOKEN_INPUT
typedef int32_t bench_input_t;
#define AT(x, t) ((x)[t])
#else
typedef int8_t bench_input_t;
#define AT(x, t) ((x) + (t) * K(INPUT_SIZE))
#endif

#include "bench_inputs.h"

static FN(state_t) state;
static int32_t out[K(OUTPUT_SIZE)];

int main(void)
{
    char cmd[256];
    int len = semihost_cmdline(cmd, sizeof cmd);
    int32_t steps = 0, t, k = 0;
    int i, digits = 0;
    if (len < 0) {
        return 2;
    }
    /* The last number on the command line is the number of steps. */
    for (i = 0; i < len && cmd[i] != '\0'; ++i) {
        if (cmd[i] >= '0' && cmd[i] <= '9') {
            steps = (digits ? steps : 0) * 10 + (cmd[i] - '0');
            digits = 1;
        } else {
            digits = 0;
        }
    }
    FN(reset)(&state);
    for (t = 0; t < steps; ++t) {
        FN(step)(&state, AT(bench_inputs, k), out);
        if (++k == BENCH_LEN) {
            k = 0;
        }
    }
    return 0;
}
