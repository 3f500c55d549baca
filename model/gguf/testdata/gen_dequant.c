// gen_dequant.c writes the dequantization reference vectors in
// testdata/dequant/ by calling ggml's own reference code (ggml-quants.c).
// It is not built by go; to regenerate (ggml-org/ggml at d99724f):
//
//   gcc -O0 -DGGML_COMMON_DECL_C -Iinclude -Isrc -Isrc/ggml-cpu gen_dequant.c src/ggml-quants.c -lm -o gen && ./gen OUTDIR
//
// run from a ggml checkout (headers include/, src/) with this file copied in.
// Each OUTDIR/<TYPE>.bin holds: uint32 block count, the raw blocks, then the
// float32 outputs of dequantize_row_<type> (little-endian).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ggml.h"
#include "ggml-quants.h"

void ggml_abort(const char *file, int line, const char *fmt, ...) { fprintf(stderr, "abort %s:%d\n", file, line); exit(1); }
size_t ggml_row_size(enum ggml_type t, int64_t n) { (void)t; (void)n; abort(); }
const char *ggml_type_name(enum ggml_type t) { (void)t; return "?"; }
size_t ggml_type_size(enum ggml_type t) { (void)t; abort(); }

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)(rng >> 11); }
static float gauss(void) { float s = 0; for (int i = 0; i < 12; i++) s += (next() & 0xffffff) / 16777216.0f; return s - 6; }

static void finite_half(uint8_t *p) { // keep an f16 field finite
	uint16_t h = p[0] | p[1] << 8;
	if (((h >> 10) & 0x1f) == 0x1f) h ^= 0x4000;
	p[0] = h & 0xff; p[1] = h >> 8;
}

typedef void (*deq_fn)(const void *, float *, int64_t);
typedef void (*q_fn)(const float *, void *, int64_t);

static void gen(const char *dir, const char *name, int qk, size_t bsz, deq_fn deq, q_fn quant, const int *halfs, int nh) {
	enum { NQ = 6, NR = 6 };
	int nb = NQ + NR;
	uint8_t *blocks = calloc(nb, bsz);
	float *x = malloc(sizeof(float) * qk * NQ);
	for (int i = 0; i < qk * NQ; i++) x[i] = gauss() * (i < qk ? 1e-3f : i < 2 * qk ? 50.0f : 0.02f);
	quant(x, blocks, (int64_t)qk * NQ); // realistic blocks from ggml's reference quantizer
	for (size_t i = NQ * bsz; i < nb * bsz; i++) blocks[i] = next() & 0xff; // arbitrary bit patterns
	for (int b = NQ; b < nb; b++) for (int h = 0; h < nh; h++) finite_half(blocks + b * bsz + halfs[h]);
	float *y = malloc(sizeof(float) * qk * nb);
	deq(blocks, y, (int64_t)qk * nb);
	char path[512];
	snprintf(path, sizeof path, "%s/%s.bin", dir, name);
	FILE *f = fopen(path, "wb");
	uint32_t n = nb;
	fwrite(&n, 4, 1, f);
	fwrite(blocks, bsz, nb, f);
	fwrite(y, sizeof(float), (size_t)qk * nb, f);
	fclose(f);
	free(blocks); free(x); free(y);
}

#define G(name, qk, T, lname, ...) do { int h[] = {__VA_ARGS__}; \
	gen(argv[1], name, qk, sizeof(T), (deq_fn)dequantize_row_##lname, (q_fn)quantize_row_##lname##_ref, h, sizeof h / sizeof h[0]); } while (0)

int main(int argc, char **argv) {
	if (argc != 2) { fprintf(stderr, "usage: gen OUTDIR\n"); return 2; }
	G("Q4_0", QK4_0, block_q4_0, q4_0, 0);
	G("Q4_1", QK4_1, block_q4_1, q4_1, 0, 2);
	G("Q5_0", QK5_0, block_q5_0, q5_0, 0);
	G("Q5_1", QK5_1, block_q5_1, q5_1, 0, 2);
	G("Q8_0", QK8_0, block_q8_0, q8_0, 0);
	G("Q2_K", QK_K, block_q2_K, q2_K, 80, 82);
	G("Q3_K", QK_K, block_q3_K, q3_K, 108);
	G("Q4_K", QK_K, block_q4_K, q4_K, 0, 2);
	G("Q5_K", QK_K, block_q5_K, q5_K, 0, 2);
	G("Q6_K", QK_K, block_q6_K, q6_K, 208);
	G("MXFP4", QK_MXFP4, block_mxfp4, mxfp4, 0);
	G("IQ4_NL", QK4_NL, block_iq4_nl, iq4_nl, 0);
	return 0;
}
