/*
 * check: runs the generated C of the char LM over token sequences and compares every
 * int32 logit with the reference interpreter's output (`irnn run`), bit for bit.
 *
 *   irnn run ../charlm/charlm.irnn.json --data ../charlm/data/test.npy --out ref.npy
 *   ./check ../charlm/data/test.npy ref.npy
 *
 * Both files are NumPy .npy: int32 tokens [N, T] and int32 logits [N, T, O]. State is
 * reset at the start of each sequence, as `irnn run` does. Exit status 0 only when all
 * values are identical.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "charlm.h"

/* A loaded .npy array of int32 values (little-endian '<i4', C order). */
typedef struct {
    long shape[3];
    int ndim;
    long count;
    int32_t *data;
} array_t;

static int load_i32_npy(const char *path, array_t *a)
{
    unsigned char pre[10];
    unsigned long header_len;
    char *header, *p;
    FILE *f = fopen(path, "rb");
    long i;

    memset(a, 0, sizeof *a);
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", path);
        return -1;
    }
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        fprintf(stderr, "%s: not a .npy file\n", path);
        fclose(f);
        return -1;
    }
    if (pre[6] == 1) {
        header_len = (unsigned long)pre[8] | ((unsigned long)pre[9] << 8);
    } else {
        unsigned char more[2];
        if (fread(more, 1, 2, f) != 2) {
            fclose(f);
            return -1;
        }
        header_len = (unsigned long)pre[8] | ((unsigned long)pre[9] << 8) |
                     ((unsigned long)more[0] << 16) | ((unsigned long)more[1] << 24);
    }
    header = malloc(header_len + 1);
    if (!header || fread(header, 1, header_len, f) != header_len) {
        fprintf(stderr, "%s: truncated header\n", path);
        free(header);
        fclose(f);
        return -1;
    }
    header[header_len] = '\0';
    if (!strstr(header, "'<i4'") || strstr(header, "'fortran_order': True")) {
        fprintf(stderr, "%s: expected a C-ordered int32 array ('<i4'): %s\n", path, header);
        free(header);
        fclose(f);
        return -1;
    }
    p = strstr(header, "'shape': (");
    if (!p) {
        free(header);
        fclose(f);
        return -1;
    }
    p += strlen("'shape': (");
    a->count = 1;
    while (*p && *p != ')' && a->ndim < 3) {
        char *end;
        long d = strtol(p, &end, 10);
        if (end == p) {
            break;
        }
        a->shape[a->ndim++] = d;
        a->count *= d;
        p = end;
        while (*p == ',' || *p == ' ') {
            ++p;
        }
    }
    free(header);
    a->data = malloc((size_t)a->count * sizeof(int32_t) + 1);
    if (!a->data) {
        fclose(f);
        return -1;
    }
    for (i = 0; i < a->count; ++i) {
        unsigned char b[4];
        if (fread(b, 1, 4, f) != 4) {
            fprintf(stderr, "%s: truncated data\n", path);
            fclose(f);
            return -1;
        }
        a->data[i] = (int32_t)((uint32_t)b[0] | ((uint32_t)b[1] << 8) |
                               ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24));
    }
    fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    array_t tokens, ref;
    charlm_state_t state;
    int32_t out[CHARLM_OUTPUT_SIZE];
    long n, t, s, step, k, mismatches = 0;

    if (argc != 3) {
        fprintf(stderr, "usage: %s TOKENS.npy REFERENCE_LOGITS.npy\n", argv[0]);
        return 2;
    }
    if (load_i32_npy(argv[1], &tokens) || load_i32_npy(argv[2], &ref)) {
        return 2;
    }
    if (tokens.ndim != 2 || ref.ndim != 3 || ref.shape[0] != tokens.shape[0] ||
        ref.shape[1] != tokens.shape[1] || ref.shape[2] != CHARLM_OUTPUT_SIZE) {
        fprintf(stderr, "shapes do not match: tokens [N, T], reference [N, T, %d]\n",
                CHARLM_OUTPUT_SIZE);
        return 2;
    }
    n = tokens.shape[0];
    t = tokens.shape[1];
    for (s = 0; s < n; ++s) {
        charlm_reset(&state);
        for (step = 0; step < t; ++step) {
            const int32_t *want = ref.data + (s * t + step) * CHARLM_OUTPUT_SIZE;
            charlm_step(&state, tokens.data[s * t + step], out);
            for (k = 0; k < CHARLM_OUTPUT_SIZE; ++k) {
                if (out[k] != want[k]) {
                    if (mismatches < 5) {
                        fprintf(stderr, "sequence %ld step %ld logit %ld: C %ld, irnn run %ld\n",
                                s, step, k, (long)out[k], (long)want[k]);
                    }
                    ++mismatches;
                }
            }
        }
    }
    if (mismatches) {
        printf("MISMATCH: %ld of %ld logits differ\n", mismatches, n * t * CHARLM_OUTPUT_SIZE);
        return 1;
    }
    printf("bit-identical: %ld sequences x %ld steps x %d logits match irnn run\n", n, t,
           CHARLM_OUTPUT_SIZE);
    free(tokens.data);
    free(ref.data);
    return 0;
}
