/*
 * charlm_demo: the shipped character-level language model (examples/charlm), compiled
 * to integer-only C by `irnn gen --lang c`, driven from a tiny C program.
 *
 * Reads a prompt from stdin, feeds it to the model one character per step, reports how
 * often the model's top prediction (argmax of the int32 logits) was the next character
 * of the prompt, then continues the text greedily (always the most likely character)
 * for -n characters. Everything is integer arithmetic; the model never sees a float.
 *
 *   printf 'ROMEO:\n' | ./charlm_demo -n 200
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "charlm.h"

/* The model's vocabulary in id order (examples/charlm/vocab.json); '~' is the unknown
 * character. */
static const char VOCAB[] =
    "\n !\"&'(),-.12:;?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_abcdefghijklmnopqrstuvwxyz~";

/* Fails to compile if the vocabulary does not match the generated model. */
typedef char vocab_matches_model[(sizeof VOCAB - 1 == CHARLM_VOCAB_SIZE) ? 1 : -1];

static int32_t token_of(int ch)
{
    const char *p = ch == '\0' ? NULL : strchr(VOCAB, ch);
    return p ? (int32_t)(p - VOCAB) : (int32_t)(sizeof VOCAB - 2); /* '~' */
}

static int32_t argmax(const int32_t *logits)
{
    int32_t best = 0, k;
    for (k = 1; k < CHARLM_OUTPUT_SIZE; ++k) {
        if (logits[k] > logits[best]) {
            best = k;
        }
    }
    return best;
}

int main(int argc, char **argv)
{
    static charlm_state_t state; /* all recurrent state: a few hundred bytes */
    int32_t logits[CHARLM_OUTPUT_SIZE];
    long generate = 200, steps = 0, hits = 0, k;
    int32_t predicted = -1, token = 0;
    int ch;

    if (argc == 3 && strcmp(argv[1], "-n") == 0) {
        generate = strtol(argv[2], NULL, 10);
    } else if (argc != 1) {
        fprintf(stderr, "usage: %s [-n CHARS] < prompt.txt\n", argv[0]);
        return 2;
    }

    charlm_reset(&state);
    while ((ch = getchar()) != EOF) {
        token = token_of(ch);
        if (predicted >= 0) {
            hits += predicted == token;
            ++steps;
        }
        charlm_step(&state, token, logits);
        predicted = argmax(logits);
        putchar(ch);
    }
    if (predicted < 0) {
        /* Empty prompt: start from a newline. */
        charlm_step(&state, token_of('\n'), logits);
        predicted = argmax(logits);
    }
    /* Greedy continuation: feed back the most likely character. */
    for (k = 0; k < generate; ++k) {
        putchar(VOCAB[predicted]);
        charlm_step(&state, predicted, logits);
        predicted = argmax(logits);
    }
    putchar('\n');
    if (steps > 0) {
        fprintf(stderr, "next-character accuracy on the prompt: %ld/%ld (%ld%%)\n", hits, steps,
                hits * 100 / steps);
    }
    return 0;
}
