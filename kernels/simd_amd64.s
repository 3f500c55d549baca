//go:build amd64 && !purego

#include "textflag.h"
#include "hsum_amd64.h"

// AVX2/FMA kernels of the CPU backend. Go declarations and bounds checks
// are in simd_amd64.go; every kernel has a pure-Go twin the tests compare
// against.

// PREFETCH_C6 prefetches the 6-row C tile at DX (row stride R8 bytes, 64
// bytes a row, possibly straddling two lines): for large C it is not in
// cache, and its load at the end would otherwise stall. Clobbers AX.
#define PREFETCH_C6 \
	MOVQ DX, AX \
	PREFETCHT0 (AX) \
	PREFETCHT0 63(AX) \
	ADDQ R8, AX \
	PREFETCHT0 (AX) \
	PREFETCHT0 63(AX) \
	ADDQ R8, AX \
	PREFETCHT0 (AX) \
	PREFETCHT0 63(AX) \
	ADDQ R8, AX \
	PREFETCHT0 (AX) \
	PREFETCHT0 63(AX) \
	ADDQ R8, AX \
	PREFETCHT0 (AX) \
	PREFETCHT0 63(AX) \
	ADDQ R8, AX \
	PREFETCHT0 (AX) \
	PREFETCHT0 63(AX)

// STORE_C6 adds the accumulators Y4..Y15 (two a row) to the 6-row C tile
// at DX (row stride R8) with ADD and stores it with MOV (PS or PD forms).
#define STORE_ROW(ADD, MOV, ya, yb) \
	ADD (DX), ya, ya \
	ADD 32(DX), yb, yb \
	MOV ya, (DX) \
	MOV yb, 32(DX)
#define STORE_C6(ADD, MOV) \
	STORE_ROW(ADD, MOV, Y4, Y5) \
	ADDQ R8, DX \
	STORE_ROW(ADD, MOV, Y6, Y7) \
	ADDQ R8, DX \
	STORE_ROW(ADD, MOV, Y8, Y9) \
	ADDQ R8, DX \
	STORE_ROW(ADD, MOV, Y10, Y11) \
	ADDQ R8, DX \
	STORE_ROW(ADD, MOV, Y12, Y13) \
	ADDQ R8, DX \
	STORE_ROW(ADD, MOV, Y14, Y15)

// func gemm6x16(kc int, a, b, c *float32, ldc int)
// C[0:6, 0:16] += Ap·Bp, Ap = kc groups of 6 floats, Bp = kc groups of 16.
// kc >= 1. Accumulators Y4..Y15 hold the 6×16 tile (two registers a row).
TEXT ·gemm6x16(SB), NOSPLIT, $0-40
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8
	PREFETCH_C6
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15

#define STEP(aoff, boff) \
	VMOVUPS boff(DI), Y0 \
	VMOVUPS boff+32(DI), Y1 \
	VBROADCASTSS aoff(SI), Y2 \
	VFMADD231PS Y0, Y2, Y4 \
	VFMADD231PS Y1, Y2, Y5 \
	VBROADCASTSS aoff+4(SI), Y3 \
	VFMADD231PS Y0, Y3, Y6 \
	VFMADD231PS Y1, Y3, Y7 \
	VBROADCASTSS aoff+8(SI), Y2 \
	VFMADD231PS Y0, Y2, Y8 \
	VFMADD231PS Y1, Y2, Y9 \
	VBROADCASTSS aoff+12(SI), Y3 \
	VFMADD231PS Y0, Y3, Y10 \
	VFMADD231PS Y1, Y3, Y11 \
	VBROADCASTSS aoff+16(SI), Y2 \
	VFMADD231PS Y0, Y2, Y12 \
	VFMADD231PS Y1, Y2, Y13 \
	VBROADCASTSS aoff+20(SI), Y3 \
	VFMADD231PS Y0, Y3, Y14 \
	VFMADD231PS Y1, Y3, Y15

	CMPQ CX, $4
	JLT  tail
loop4:
	PREFETCHT0 384(DI)
	STEP(0, 0)
	STEP(24, 64)
	PREFETCHT0 448(DI)
	STEP(48, 128)
	STEP(72, 192)
	ADDQ $96, SI
	ADDQ $256, DI
	SUBQ $4, CX
	CMPQ CX, $4
	JGE  loop4
tail:
	TESTQ CX, CX
	JZ    store
loop1:
	STEP(0, 0)
	ADDQ $24, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  loop1
store:
	STORE_C6(VADDPS, VMOVUPS)
	VZEROUPPER
	RET

// func dgemm6x8(kc int, a, b, c *float64, ldc int)
// gemm6x16 for float64: C[0:6, 0:8] += Ap·Bp, Ap = kc groups of 6 doubles,
// Bp = kc groups of 8. kc >= 1. Y4..Y15 hold the 6×8 tile.
TEXT ·dgemm6x8(SB), NOSPLIT, $0-40
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $3, R8
	PREFETCH_C6
	VXORPD Y4, Y4, Y4
	VXORPD Y5, Y5, Y5
	VXORPD Y6, Y6, Y6
	VXORPD Y7, Y7, Y7
	VXORPD Y8, Y8, Y8
	VXORPD Y9, Y9, Y9
	VXORPD Y10, Y10, Y10
	VXORPD Y11, Y11, Y11
	VXORPD Y12, Y12, Y12
	VXORPD Y13, Y13, Y13
	VXORPD Y14, Y14, Y14
	VXORPD Y15, Y15, Y15

#define DSTEP(aoff, boff) \
	VMOVUPD boff(DI), Y0 \
	VMOVUPD boff+32(DI), Y1 \
	VBROADCASTSD aoff(SI), Y2 \
	VFMADD231PD Y0, Y2, Y4 \
	VFMADD231PD Y1, Y2, Y5 \
	VBROADCASTSD aoff+8(SI), Y3 \
	VFMADD231PD Y0, Y3, Y6 \
	VFMADD231PD Y1, Y3, Y7 \
	VBROADCASTSD aoff+16(SI), Y2 \
	VFMADD231PD Y0, Y2, Y8 \
	VFMADD231PD Y1, Y2, Y9 \
	VBROADCASTSD aoff+24(SI), Y3 \
	VFMADD231PD Y0, Y3, Y10 \
	VFMADD231PD Y1, Y3, Y11 \
	VBROADCASTSD aoff+32(SI), Y2 \
	VFMADD231PD Y0, Y2, Y12 \
	VFMADD231PD Y1, Y2, Y13 \
	VBROADCASTSD aoff+40(SI), Y3 \
	VFMADD231PD Y0, Y3, Y14 \
	VFMADD231PD Y1, Y3, Y15

	CMPQ CX, $4
	JLT  tail
loop4:
	PREFETCHT0 384(DI)
	DSTEP(0, 0)
	DSTEP(48, 64)
	PREFETCHT0 448(DI)
	DSTEP(96, 128)
	DSTEP(144, 192)
	ADDQ $192, SI
	ADDQ $256, DI
	SUBQ $4, CX
	CMPQ CX, $4
	JGE  loop4
tail:
	TESTQ CX, CX
	JZ    store
loop1:
	DSTEP(0, 0)
	ADDQ $48, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  loop1
store:
	STORE_C6(VADDPD, VMOVUPD)
	VZEROUPPER
	RET

// func dotAVX(x, y *float32, n int) float32
// n is a positive multiple of 8.
TEXT ·dotAVX(SB), NOSPLIT, $0-28
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	CMPQ CX, $32
	JLT  dot8
dot32:
	VMOVUPS (SI), Y4
	VMOVUPS 32(SI), Y5
	VMOVUPS 64(SI), Y6
	VMOVUPS 96(SI), Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $32, CX
	CMPQ CX, $32
	JGE  dot32
dot8:
	TESTQ CX, CX
	JZ    dotdone
	VMOVUPS (SI), Y4
	VFMADD231PS (DI), Y4, Y0
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  dot8
dotdone:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	HSUM_Y0
	MOVSS X0, ret+24(FP)
	RET

// func axpyAVX(a float32, x, y *float32, n int)
// y += a*x; n is a positive multiple of 8.
TEXT ·axpyAVX(SB), NOSPLIT, $0-32
	VBROADCASTSS a+0(FP), Y0
	MOVQ x+8(FP), SI
	MOVQ y+16(FP), DI
	MOVQ n+24(FP), CX
	CMPQ CX, $32
	JLT  axpy8
axpy32:
	VMOVUPS (DI), Y4
	VMOVUPS 32(DI), Y5
	VMOVUPS 64(DI), Y6
	VMOVUPS 96(DI), Y7
	VFMADD231PS (SI), Y0, Y4
	VFMADD231PS 32(SI), Y0, Y5
	VFMADD231PS 64(SI), Y0, Y6
	VFMADD231PS 96(SI), Y0, Y7
	VMOVUPS Y4, (DI)
	VMOVUPS Y5, 32(DI)
	VMOVUPS Y6, 64(DI)
	VMOVUPS Y7, 96(DI)
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $32, CX
	CMPQ CX, $32
	JGE  axpy32
axpy8:
	TESTQ CX, CX
	JZ    axpydone
	VMOVUPS (DI), Y4
	VFMADD231PS (SI), Y0, Y4
	VMOVUPS Y4, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  axpy8
axpydone:
	VZEROUPPER
	RET

// func fwhtLow3AVX(x *float32, n int)
// The first three butterfly stages (h = 1, 2, 4) on every group of 8
// floats, in the operation order of fwhtGo. n is a multiple of 8.
TEXT ·fwhtLow3AVX(SB), NOSPLIT, $0-16
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	SHRQ $3, CX
	JZ   low3done
low3:
	VMOVUPS (SI), Y0
	// h = 1: lanes (0,1), (2,3), ...
	VPERMILPS $0xB1, Y0, Y1
	VADDPS Y1, Y0, Y2
	VSUBPS Y0, Y1, Y3
	VBLENDPS $0xAA, Y3, Y2, Y0
	// h = 2
	VPERMILPS $0x4E, Y0, Y1
	VADDPS Y1, Y0, Y2
	VSUBPS Y0, Y1, Y3
	VBLENDPS $0xCC, Y3, Y2, Y0
	// h = 4
	VPERM2F128 $0x01, Y0, Y0, Y1
	VADDPS Y1, Y0, Y2
	VSUBPS Y0, Y1, Y3
	VBLENDPS $0xF0, Y3, Y2, Y0
	VMOVUPS Y0, (SI)
	ADDQ $32, SI
	DECQ CX
	JNZ  low3
low3done:
	VZEROUPPER
	RET

// func fwhtPassAVX(x *float32, n, h int)
// One butterfly stage of distance h (a multiple of 8) over n floats (a
// multiple of 2h): x[i], x[i+h] = x[i]+x[i+h], x[i]-x[i+h].
TEXT ·fwhtPassAVX(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	MOVQ h+16(FP), DX
	SHLQ $2, DX            // h in bytes
	SHLQ $2, CX
	ADDQ SI, CX            // end
pass_outer:
	CMPQ SI, CX
	JGE  pass_done
	MOVQ SI, DI
	LEAQ (SI)(DX*1), R8    // end of the low half
pass_inner:
	VMOVUPS (DI), Y0
	VMOVUPS (DI)(DX*1), Y1
	VADDPS Y1, Y0, Y2
	VSUBPS Y1, Y0, Y3
	VMOVUPS Y2, (DI)
	VMOVUPS Y3, (DI)(DX*1)
	ADDQ $32, DI
	CMPQ DI, R8
	JLT  pass_inner
	LEAQ (SI)(DX*2), SI
	JMP  pass_outer
pass_done:
	VZEROUPPER
	RET

// func scaleAVX(x *float32, n int, s float32)
// x *= s; n is a multiple of 8.
TEXT ·scaleAVX(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS s+16(FP), Y0
	SHRQ $3, CX
	JZ   scaledone
scaleloop:
	VMULPS (SI), Y0, Y1
	VMOVUPS Y1, (SI)
	ADDQ $32, SI
	DECQ CX
	JNZ  scaleloop
scaledone:
	VZEROUPPER
	RET

// func lut4DecodeAVX(dst *float32, codes *byte, ngroups, gs int, base *[16]float32, muls, offs *float32)
// Decodes ngroups groups of gs (a multiple of 16) 4-bit codes, low nibble
// first, through the 16-entry table (base[i] − offs[g])·muls[g].
TEXT ·lut4DecodeAVX(SB), NOSPLIT, $0-56
	MOVQ dst+0(FP), DI
	MOVQ codes+8(FP), SI
	MOVQ ngroups+16(FP), BX
	MOVQ gs+24(FP), DX
	MOVQ base+32(FP), R9
	MOVQ muls+40(FP), R10
	MOVQ offs+48(FP), R11
	SHRQ $4, DX            // 16-element steps per group
	MOVL $0x0F0F0F0F, AX
	VMOVQ AX, X15
	VPBROADCASTD X15, X15
	TESTQ BX, BX
	JZ    lutdone
lutgroup:
	VBROADCASTSS (R10), Y14
	VBROADCASTSS (R11), Y11
	VMOVUPS (R9), Y12
	VSUBPS Y11, Y12, Y12
	VMULPS Y14, Y12, Y12
	VMOVUPS 32(R9), Y13
	VSUBPS Y11, Y13, Y13
	VMULPS Y14, Y13, Y13
	MOVQ DX, CX
lutstep:
	VMOVQ (SI), X0
	VPAND X15, X0, X1
	VPSRLW $4, X0, X2
	VPAND X15, X2, X2
	VPUNPCKLBW X2, X1, X3
	VPMOVZXBD X3, Y4
	VPSRLDQ $8, X3, X5
	VPMOVZXBD X5, Y5
	VPERMPS Y12, Y4, Y6
	VPERMPS Y13, Y4, Y7
	VPSLLD $28, Y4, Y8
	VBLENDVPS Y8, Y7, Y6, Y9
	VMOVUPS Y9, (DI)
	VPERMPS Y12, Y5, Y6
	VPERMPS Y13, Y5, Y7
	VPSLLD $28, Y5, Y8
	VBLENDVPS Y8, Y7, Y6, Y9
	VMOVUPS Y9, 32(DI)
	ADDQ $8, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  lutstep
	ADDQ $4, R10
	ADDQ $4, R11
	DECQ BX
	JNZ  lutgroup
lutdone:
	VZEROUPPER
	RET

// func lut4DotAVX(x *float32, codes *byte, ngroups, gs int, base *[16]float32, muls, offs *float32) float32
// Returns Σ w[e]·x[e] over ngroups groups of gs (a multiple of 16) 4-bit
// codes, w = table (base[i] − offs[g])·muls[g] as in lut4DecodeAVX. x is
// de-interleaved per 16 elements: the 8 even elements, then the 8 odd ones
// (so the low and high nibbles of 8 code bytes meet their x directly).
TEXT ·lut4DotAVX(SB), NOSPLIT, $0-60
	MOVQ x+0(FP), DI
	MOVQ codes+8(FP), SI
	MOVQ ngroups+16(FP), BX
	MOVQ gs+24(FP), DX
	MOVQ base+32(FP), R9
	MOVQ muls+40(FP), R10
	MOVQ offs+48(FP), R11
	SHRQ $4, DX
	MOVL $0x0F, AX
	VMOVQ AX, X15
	VPBROADCASTD X15, Y15
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VMOVUPS (R9), Y10
	VMOVUPS 32(R9), Y11
	TESTQ BX, BX
	JZ    dotlutdone
dotlutgroup:
	VBROADCASTSS (R10), Y14
	VBROADCASTSS (R11), Y9
	VSUBPS Y9, Y10, Y12
	VMULPS Y14, Y12, Y12
	VSUBPS Y9, Y11, Y13
	VMULPS Y14, Y13, Y13
	MOVQ DX, CX
dotlutstep:
	// Even steps accumulate into Y0/Y1, odd ones into Y2/Y3, to halve the
	// FMA dependency chains.
	VPMOVZXBD (SI), Y4
	VPAND Y15, Y4, Y5
	VPSRLD $4, Y4, Y6
	VPERMPS Y12, Y5, Y7
	VPERMPS Y13, Y5, Y8
	VPSLLD $28, Y5, Y5
	VBLENDVPS Y5, Y8, Y7, Y7
	VFMADD231PS (DI), Y7, Y0
	VPERMPS Y12, Y6, Y8
	VPERMPS Y13, Y6, Y9
	VPSLLD $28, Y6, Y6
	VBLENDVPS Y6, Y9, Y8, Y8
	VFMADD231PS 32(DI), Y8, Y1
	ADDQ $8, SI
	ADDQ $64, DI
	DECQ CX
	JZ   dotlutnext
	VPMOVZXBD (SI), Y4
	VPAND Y15, Y4, Y5
	VPSRLD $4, Y4, Y6
	VPERMPS Y12, Y5, Y7
	VPERMPS Y13, Y5, Y8
	VPSLLD $28, Y5, Y5
	VBLENDVPS Y5, Y8, Y7, Y7
	VFMADD231PS (DI), Y7, Y2
	VPERMPS Y12, Y6, Y8
	VPERMPS Y13, Y6, Y9
	VPSLLD $28, Y6, Y6
	VBLENDVPS Y6, Y9, Y8, Y8
	VFMADD231PS 32(DI), Y8, Y3
	ADDQ $8, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  dotlutstep
dotlutnext:
	ADDQ $4, R10
	ADDQ $4, R11
	DECQ BX
	JNZ  dotlutgroup
dotlutdone:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	HSUM_Y0
	MOVSS X0, ret+56(FP)
	RET

// func axpy4AVX(x *[4]float32, b *float32, ldb int, y *float32, n int)
// y[j] += x0·b[j] + x1·b[ldb+j] + x2·b[2ldb+j] + x3·b[3ldb+j] (in that
// order); n is a positive multiple of 8.
TEXT ·axpy4AVX(SB), NOSPLIT, $0-40
	MOVQ x+0(FP), AX
	VBROADCASTSS (AX), Y0
	VBROADCASTSS 4(AX), Y1
	VBROADCASTSS 8(AX), Y2
	VBROADCASTSS 12(AX), Y3
	MOVQ b+8(FP), SI
	MOVQ ldb+16(FP), DX
	SHLQ $2, DX
	LEAQ (SI)(DX*2), R8    // row 2
	MOVQ y+24(FP), DI
	MOVQ n+32(FP), CX
	CMPQ CX, $32
	JLT  ax4_8
ax4_32:
	VMOVUPS (DI), Y4
	VMOVUPS 32(DI), Y5
	VMOVUPS 64(DI), Y6
	VMOVUPS 96(DI), Y7
	VFMADD231PS (SI), Y0, Y4
	VFMADD231PS 32(SI), Y0, Y5
	VFMADD231PS 64(SI), Y0, Y6
	VFMADD231PS 96(SI), Y0, Y7
	VFMADD231PS (SI)(DX*1), Y1, Y4
	VFMADD231PS 32(SI)(DX*1), Y1, Y5
	VFMADD231PS 64(SI)(DX*1), Y1, Y6
	VFMADD231PS 96(SI)(DX*1), Y1, Y7
	VFMADD231PS (R8), Y2, Y4
	VFMADD231PS 32(R8), Y2, Y5
	VFMADD231PS 64(R8), Y2, Y6
	VFMADD231PS 96(R8), Y2, Y7
	VFMADD231PS (R8)(DX*1), Y3, Y4
	VFMADD231PS 32(R8)(DX*1), Y3, Y5
	VFMADD231PS 64(R8)(DX*1), Y3, Y6
	VFMADD231PS 96(R8)(DX*1), Y3, Y7
	VMOVUPS Y4, (DI)
	VMOVUPS Y5, 32(DI)
	VMOVUPS Y6, 64(DI)
	VMOVUPS Y7, 96(DI)
	ADDQ $128, SI
	ADDQ $128, R8
	ADDQ $128, DI
	SUBQ $32, CX
	CMPQ CX, $32
	JGE  ax4_32
ax4_8:
	TESTQ CX, CX
	JZ    ax4_done
	VMOVUPS (DI), Y4
	VFMADD231PS (SI), Y0, Y4
	VFMADD231PS (SI)(DX*1), Y1, Y4
	VFMADD231PS (R8), Y2, Y4
	VFMADD231PS (R8)(DX*1), Y3, Y4
	VMOVUPS Y4, (DI)
	ADDQ $32, SI
	ADDQ $32, R8
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  ax4_8
ax4_done:
	VZEROUPPER
	RET

// TRANSPOSE8 transposes the 8×8 block in Y0..Y7 into Y8..Y15 (row i of the
// result in Y(8+i)); Y0..Y7 are clobbered.
#define TRANSPOSE8 \
	VUNPCKLPS Y1, Y0, Y8 \
	VUNPCKHPS Y1, Y0, Y9 \
	VUNPCKLPS Y3, Y2, Y10 \
	VUNPCKHPS Y3, Y2, Y11 \
	VUNPCKLPS Y5, Y4, Y12 \
	VUNPCKHPS Y5, Y4, Y13 \
	VUNPCKLPS Y7, Y6, Y14 \
	VUNPCKHPS Y7, Y6, Y15 \
	VSHUFPS $0x44, Y10, Y8, Y0 \
	VSHUFPS $0xEE, Y10, Y8, Y1 \
	VSHUFPS $0x44, Y11, Y9, Y2 \
	VSHUFPS $0xEE, Y11, Y9, Y3 \
	VSHUFPS $0x44, Y14, Y12, Y4 \
	VSHUFPS $0xEE, Y14, Y12, Y5 \
	VSHUFPS $0x44, Y15, Y13, Y6 \
	VSHUFPS $0xEE, Y15, Y13, Y7 \
	VPERM2F128 $0x20, Y4, Y0, Y8 \
	VPERM2F128 $0x20, Y5, Y1, Y9 \
	VPERM2F128 $0x20, Y6, Y2, Y10 \
	VPERM2F128 $0x20, Y7, Y3, Y11 \
	VPERM2F128 $0x31, Y4, Y0, Y12 \
	VPERM2F128 $0x31, Y5, Y1, Y13 \
	VPERM2F128 $0x31, Y6, Y2, Y14 \
	VPERM2F128 $0x31, Y7, Y3, Y15

// func packBT16AVX(dst, src *float32, ldb, kc8 int)
// Packs 16 rows of src (row j at src + j·ldb) over 8·kc8 columns p into
// dst[p·16 + j] (the transposed-B panel layout of packB).
TEXT ·packBT16AVX(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ldb+16(FP), DX
	MOVQ kc8+24(FP), CX
	SHLQ $2, DX
	LEAQ (DX)(DX*2), R12   // 3·ldb bytes
	MOVQ SI, AX            // row 0
	LEAQ (SI)(DX*4), BX    // row 4
	LEAQ (BX)(DX*4), R8    // row 8
	LEAQ (R8)(DX*4), R9    // row 12
	TESTQ CX, CX
	JZ    pbtdone
pbtloop:
	VMOVUPS (AX), Y0
	VMOVUPS (AX)(DX*1), Y1
	VMOVUPS (AX)(DX*2), Y2
	VMOVUPS (AX)(R12*1), Y3
	VMOVUPS (BX), Y4
	VMOVUPS (BX)(DX*1), Y5
	VMOVUPS (BX)(DX*2), Y6
	VMOVUPS (BX)(R12*1), Y7
	TRANSPOSE8
	VMOVUPS Y8, (DI)
	VMOVUPS Y9, 64(DI)
	VMOVUPS Y10, 128(DI)
	VMOVUPS Y11, 192(DI)
	VMOVUPS Y12, 256(DI)
	VMOVUPS Y13, 320(DI)
	VMOVUPS Y14, 384(DI)
	VMOVUPS Y15, 448(DI)
	VMOVUPS (R8), Y0
	VMOVUPS (R8)(DX*1), Y1
	VMOVUPS (R8)(DX*2), Y2
	VMOVUPS (R8)(R12*1), Y3
	VMOVUPS (R9), Y4
	VMOVUPS (R9)(DX*1), Y5
	VMOVUPS (R9)(DX*2), Y6
	VMOVUPS (R9)(R12*1), Y7
	TRANSPOSE8
	VMOVUPS Y8, 32(DI)
	VMOVUPS Y9, 96(DI)
	VMOVUPS Y10, 160(DI)
	VMOVUPS Y11, 224(DI)
	VMOVUPS Y12, 288(DI)
	VMOVUPS Y13, 352(DI)
	VMOVUPS Y14, 416(DI)
	VMOVUPS Y15, 480(DI)
	ADDQ $32, AX
	ADDQ $32, BX
	ADDQ $32, R8
	ADDQ $32, R9
	ADDQ $512, DI
	DECQ CX
	JNZ  pbtloop
pbtdone:
	VZEROUPPER
	RET

// func lut4DotBF16AVX(x *float32, codes *byte, ngroups, gs int, planes *[64]byte, muls, offs *float32) float32
// Σ w[e]·x[e] over ngroups groups of gs (a multiple of 32) 4-bit codes,
// w = (base[code] − offs[g])·muls[g], for element tables whose values are
// exact in bfloat16 (E2M1, small integers): planes holds byte 3 (first 32
// bytes) and byte 2 (last 32) of each base value's float32 bits, each
// 16-byte table repeated for both lanes. VPSHUFB then rebuilds the base
// values without any per-group table, and one VMULPS applies the scale, so
// w = fl((base − off)·mul) exactly as quant computes it. x is permuted per
// 8 elements: the 4 even ones, then the 4 odd ones (deinterleave8).
TEXT ·lut4DotBF16AVX(SB), NOSPLIT, $0-60
	MOVQ x+0(FP), DI
	MOVQ codes+8(FP), SI
	MOVQ ngroups+16(FP), BX
	MOVQ gs+24(FP), DX
	MOVQ planes+32(FP), R9
	MOVQ muls+40(FP), R10
	MOVQ offs+48(FP), R11
	SHRQ $5, DX
	MOVL $0x0F0F0F0F, AX
	VMOVQ AX, X15
	VPBROADCASTD X15, X15
	VMOVDQU (R9), Y14
	VMOVDQU 32(R9), Y13
	VPXOR Y12, Y12, Y12
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	TESTQ BX, BX
	JZ    bfdone
bfgroup:
	VBROADCASTSS (R10), Y11
	VBROADCASTSS (R11), Y10
	MOVQ DX, CX
bfstep:
	VMOVDQU (SI), X4
	VPSRLW $4, X4, X5
	VPAND X15, X4, X4
	VPAND X15, X5, X5
	VINSERTI128 $1, X5, Y4, Y4
	VPSHUFB Y4, Y14, Y5
	VPSHUFB Y4, Y13, Y6
	VPUNPCKLBW Y5, Y6, Y7
	VPUNPCKHBW Y5, Y6, Y8
	VPUNPCKLWD Y7, Y12, Y4
	VPUNPCKHWD Y7, Y12, Y5
	VPUNPCKLWD Y8, Y12, Y6
	VPUNPCKHWD Y8, Y12, Y7
	VSUBPS Y10, Y4, Y4
	VSUBPS Y10, Y5, Y5
	VSUBPS Y10, Y6, Y6
	VSUBPS Y10, Y7, Y7
	VMULPS Y11, Y4, Y4
	VMULPS Y11, Y5, Y5
	VMULPS Y11, Y6, Y6
	VMULPS Y11, Y7, Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ $16, SI
	ADDQ $128, DI
	DECQ CX
	JNZ  bfstep
	ADDQ $4, R10
	ADDQ $4, R11
	DECQ BX
	JNZ  bfgroup
bfdone:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	HSUM_Y0
	MOVSS X0, ret+56(FP)
	RET

// expconst<> holds the exp constants, each repeated 8 times (one YMM):
//   +0: 1.9875691500e-4
//   +32: 1.3981999507e-3
//   +64: 8.3334519073e-3
//   +96: 4.1665795894e-2
//   +128: 1.6666665459e-1
//   +160: 0.5
//   +192: 1
//   +224: int 127
DATA expconst<>+0(SB)/4, $0x39506967
DATA expconst<>+4(SB)/4, $0x39506967
DATA expconst<>+8(SB)/4, $0x39506967
DATA expconst<>+12(SB)/4, $0x39506967
DATA expconst<>+16(SB)/4, $0x39506967
DATA expconst<>+20(SB)/4, $0x39506967
DATA expconst<>+24(SB)/4, $0x39506967
DATA expconst<>+28(SB)/4, $0x39506967
DATA expconst<>+32(SB)/4, $0x3AB743CE
DATA expconst<>+36(SB)/4, $0x3AB743CE
DATA expconst<>+40(SB)/4, $0x3AB743CE
DATA expconst<>+44(SB)/4, $0x3AB743CE
DATA expconst<>+48(SB)/4, $0x3AB743CE
DATA expconst<>+52(SB)/4, $0x3AB743CE
DATA expconst<>+56(SB)/4, $0x3AB743CE
DATA expconst<>+60(SB)/4, $0x3AB743CE
DATA expconst<>+64(SB)/4, $0x3C088908
DATA expconst<>+68(SB)/4, $0x3C088908
DATA expconst<>+72(SB)/4, $0x3C088908
DATA expconst<>+76(SB)/4, $0x3C088908
DATA expconst<>+80(SB)/4, $0x3C088908
DATA expconst<>+84(SB)/4, $0x3C088908
DATA expconst<>+88(SB)/4, $0x3C088908
DATA expconst<>+92(SB)/4, $0x3C088908
DATA expconst<>+96(SB)/4, $0x3D2AA9C1
DATA expconst<>+100(SB)/4, $0x3D2AA9C1
DATA expconst<>+104(SB)/4, $0x3D2AA9C1
DATA expconst<>+108(SB)/4, $0x3D2AA9C1
DATA expconst<>+112(SB)/4, $0x3D2AA9C1
DATA expconst<>+116(SB)/4, $0x3D2AA9C1
DATA expconst<>+120(SB)/4, $0x3D2AA9C1
DATA expconst<>+124(SB)/4, $0x3D2AA9C1
DATA expconst<>+128(SB)/4, $0x3E2AAAAA
DATA expconst<>+132(SB)/4, $0x3E2AAAAA
DATA expconst<>+136(SB)/4, $0x3E2AAAAA
DATA expconst<>+140(SB)/4, $0x3E2AAAAA
DATA expconst<>+144(SB)/4, $0x3E2AAAAA
DATA expconst<>+148(SB)/4, $0x3E2AAAAA
DATA expconst<>+152(SB)/4, $0x3E2AAAAA
DATA expconst<>+156(SB)/4, $0x3E2AAAAA
DATA expconst<>+160(SB)/4, $0x3F000000
DATA expconst<>+164(SB)/4, $0x3F000000
DATA expconst<>+168(SB)/4, $0x3F000000
DATA expconst<>+172(SB)/4, $0x3F000000
DATA expconst<>+176(SB)/4, $0x3F000000
DATA expconst<>+180(SB)/4, $0x3F000000
DATA expconst<>+184(SB)/4, $0x3F000000
DATA expconst<>+188(SB)/4, $0x3F000000
DATA expconst<>+192(SB)/4, $0x3F800000
DATA expconst<>+196(SB)/4, $0x3F800000
DATA expconst<>+200(SB)/4, $0x3F800000
DATA expconst<>+204(SB)/4, $0x3F800000
DATA expconst<>+208(SB)/4, $0x3F800000
DATA expconst<>+212(SB)/4, $0x3F800000
DATA expconst<>+216(SB)/4, $0x3F800000
DATA expconst<>+220(SB)/4, $0x3F800000
DATA expconst<>+224(SB)/4, $0x0000007F
DATA expconst<>+228(SB)/4, $0x0000007F
DATA expconst<>+232(SB)/4, $0x0000007F
DATA expconst<>+236(SB)/4, $0x0000007F
DATA expconst<>+240(SB)/4, $0x0000007F
DATA expconst<>+244(SB)/4, $0x0000007F
DATA expconst<>+248(SB)/4, $0x0000007F
DATA expconst<>+252(SB)/4, $0x0000007F
GLOBL expconst<>(SB), RODATA|NOPTR, $256

// func expAVX(dst, src *float32, n int)
// dst[i] = e^src[i] for n (a positive multiple of 8) floats: Cephes expf
// (range reduction by ln 2 in two parts, degree-6 polynomial, 2^n through
// the exponent bits in two halves), max error about 2 ulp. Results below
// the smallest normal float become 0 (x < -87.3365, including -Inf), above
// the largest +Inf (x > 88.7228); NaN stays NaN.
TEXT ·expAVX(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JZ   expdone
	MOVL $0x42B17218, AX       // 88.72283935546875
	VMOVD AX, X15
	VPBROADCASTD X15, Y15
	MOVL $0xC2AEAC50, AX       // -87.33654022216797
	VMOVD AX, X14
	VPBROADCASTD X14, Y14
	MOVL $0x3FB8AA3B, AX       // log2(e)
	VMOVD AX, X13
	VPBROADCASTD X13, Y13
	MOVL $0x3F318000, AX       // C1 = 0.693359375
	VMOVD AX, X12
	VPBROADCASTD X12, Y12
	MOVL $0xB95E8083, AX       // C2 = -2.12194440e-4
	VMOVD AX, X11
	VPBROADCASTD X11, Y11
	MOVL $0x7F800000, AX       // +Inf
	VMOVD AX, X10
	VPBROADCASTD X10, Y10
	LEAQ expconst<>(SB), R8
expl:
	VMOVUPS (SI), Y0                  // x
	VCMPPS $0x1E, Y15, Y0, Y8         // x > hi (ordered)
	VCMPPS $0x1D, Y14, Y0, Y9         // x >= lo (ordered; false for NaN)
	VMINPS Y0, Y15, Y1                // clamp, keeping NaN
	VMAXPS Y1, Y14, Y1
	VMULPS Y13, Y1, Y2
	VROUNDPS $0, Y2, Y2               // n = round(x·log2 e)
	VFNMADD231PS Y12, Y2, Y1          // r = x − n·C1
	VFNMADD231PS Y11, Y2, Y1          // r −= n·C2
	VMOVUPS (R8), Y3                  // p = c0
	VFMADD213PS 32(R8), Y1, Y3        // p = p·r + c1
	VFMADD213PS 64(R8), Y1, Y3
	VFMADD213PS 96(R8), Y1, Y3
	VFMADD213PS 128(R8), Y1, Y3
	VFMADD213PS 160(R8), Y1, Y3       // ... + 0.5
	VMULPS Y1, Y1, Y5                 // r²
	VFMADD213PS Y1, Y5, Y3            // p·r² + r
	VADDPS 192(R8), Y3, Y3            // + 1
	VCVTPS2DQ Y2, Y6                  // n, then 2^n as 2^h·2^(n−h), h = n>>1,
	VPSRAD $1, Y6, Y5                 // so both factors stay normal floats
	VPSUBD Y5, Y6, Y6
	VMOVDQU 224(R8), Y4               // 127
	VPADDD Y4, Y5, Y5
	VPSLLD $23, Y5, Y5
	VPADDD Y4, Y6, Y6
	VPSLLD $23, Y6, Y6
	VMULPS Y5, Y3, Y3
	VMULPS Y6, Y3, Y3
	// Below the range (and -Inf) → 0; NaN → x; above → +Inf.
	VCMPPS $3, Y0, Y0, Y7             // unordered: x is NaN
	VORPS Y7, Y9, Y9
	VANDPS Y9, Y3, Y3
	VBLENDVPS Y7, Y0, Y3, Y3
	VBLENDVPS Y8, Y10, Y3, Y3
	VMOVUPS Y3, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  expl
expdone:
	VZEROUPPER
	RET

// func packB16AVX(dst, src *float32, ldb, kc int)
// dst[p*16 : p*16+16] = src[p*ldb : p*ldb+16] for p < kc: a strip of 16
// columns of a row-major B, two 32-byte moves a row.
TEXT ·packB16AVX(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ldb+16(FP), DX
	MOVQ kc+24(FP), CX
	SHLQ $2, DX
	TESTQ CX, CX
	JZ    pbdone
pbloop:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ DX, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  pbloop
pbdone:
	VZEROUPPER
	RET
