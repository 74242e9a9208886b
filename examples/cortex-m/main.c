/*
 * Runs an irnn-generated model on a sample input compiled into the firmware and prints
 * its int32 outputs over semihosting; for a character-level language model (token input,
 * 72-character vocabulary, like the shipped examples/gru_charlm) it then continues the
 * prompt greedily and prints the text.
 *
 * The Makefile tells it which model it runs:
 *   -DIRNN_HEADER='"gru_charlm.h"'   the generated header
 *   -DIRNN_PREFIX=gru_charlm_         the prefix of the generated functions and types
 *   -DIRNN_PREFIX_UPPER=GRU_CHARLM_   the prefix of the generated macros
 *   -DIRNN_TOKEN_INPUT                when the model takes token ids (else int8 features)
 *
 * Integer arithmetic only, no heap, no C library: semihost.h prints (replace it by your
 * UART driver on a board without a debugger).
 */
#include <stdint.h>

#include "semihost.h"
#include IRNN_HEADER

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(IRNN_PREFIX, name)
#define K(name) CAT(IRNN_PREFIX_UPPER, name)

#define OUTPUT_SIZE K(OUTPUT_SIZE)

/* How many characters the language-model demo generates after the prompt. */
#ifndef GENERATE
#define GENERATE 80
#endif

/* The model's state and outputs: static, so that the stack stays small. */
static FN(state_t) state;
static int32_t out[OUTPUT_SIZE];

static void print_outputs(int32_t step)
{
    int32_t k;
    semihost_puts("step ");
    semihost_put_i32(step);
    semihost_puts(":");
    for (k = 0; k < OUTPUT_SIZE; ++k) {
        semihost_puts(" ");
        semihost_put_i32(out[k]);
    }
    semihost_puts("\n");
}

static int32_t argmax(void)
{
    int32_t best = 0, k;
    for (k = 1; k < OUTPUT_SIZE; ++k) {
        if (out[k] > out[best]) {
            best = k;
        }
    }
    return best;
}

#ifdef IRNN_TOKEN_INPUT

/* The 72-character vocabulary of the shipped character models, in id order; '~' is
 * the unknown character. */
static const char VOCAB[] =
    "\n !\"&'(),-.12:;?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_abcdefghijklmnopqrstuvwxyz~";
#define IS_CHAR_MODEL (K(VOCAB_SIZE) == (int)(sizeof VOCAB - 1))

static const char PROMPT[] = "ROMEO:\nBut soft";

static int32_t token_of(char ch)
{
    int32_t k;
    if (!IS_CHAR_MODEL) {
        /* Another vocabulary: any ids will do as a sample. */
        return (int32_t)((unsigned char)ch % (unsigned)K(VOCAB_SIZE));
    }
    for (k = 0; VOCAB[k] != '\0'; ++k) {
        if (VOCAB[k] == ch) {
            return k;
        }
    }
    return (int32_t)(sizeof VOCAB - 2);
}

int main(void)
{
    int32_t t, next;
    FN(reset)(&state);
    for (t = 0; PROMPT[t] != '\0'; ++t) {
        FN(step)(&state, token_of(PROMPT[t]), out);
        print_outputs(t);
    }
    if (IS_CHAR_MODEL) {
        semihost_puts("---\n");
        semihost_puts(PROMPT);
        for (t = 0; t < GENERATE; ++t) {
            next = argmax();
            semihost_putc(VOCAB[next]);
            FN(step)(&state, next, out);
        }
        semihost_puts("\n---\n");
    }
    return 0;
}

#else /* feature input */

#define INPUT_SIZE K(INPUT_SIZE)
#define STEPS 8

int main(void)
{
    static int8_t x[INPUT_SIZE];
    int32_t t, i;
    FN(reset)(&state);
    for (t = 0; t < STEPS; ++t) {
        /* A sample signal: a ramp that moves with the step. */
        for (i = 0; i < INPUT_SIZE; ++i) {
            x[i] = (int8_t)(((i * 37 + t * 11) % 256) - 128);
        }
        FN(step)(&state, x, out);
        print_outputs(t);
    }
    semihost_puts("argmax of the last step: ");
    semihost_put_i32(argmax());
    semihost_puts("\n");
    return 0;
}

#endif
