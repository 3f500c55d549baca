//go:build amd64 && !purego

#include "textflag.h"
#include "hsum_amd64.h"

// BF16STEP decodes 32 codes (16 bytes at SI) through the bfloat16 planes
// (Y14: byte 3, Y13: byte 2, Y15: nibble mask, Y12: zero) and adds their
// products with x (128 bytes at DI, deinterleave8 order) to Y2 and Y3.
#define BF16STEP \
	VMOVDQU (SI), X4 \
	VPSRLW $4, X4, X5 \
	VPAND X15, X4, X4 \
	VPAND X15, X5, X5 \
	VINSERTI128 $1, X5, Y4, Y4 \
	VPSHUFB Y4, Y14, Y5 \
	VPSHUFB Y4, Y13, Y6 \
	VPUNPCKLBW Y5, Y6, Y7 \
	VPUNPCKHBW Y5, Y6, Y8 \
	VPUNPCKLWD Y7, Y12, Y4 \
	VPUNPCKHWD Y7, Y12, Y5 \
	VPUNPCKLWD Y8, Y12, Y6 \
	VPUNPCKHWD Y8, Y12, Y7 \
	VFMADD231PS (DI), Y4, Y2 \
	VFMADD231PS 32(DI), Y5, Y3 \
	VFMADD231PS 64(DI), Y6, Y2 \
	VFMADD231PS 96(DI), Y7, Y3 \
	ADDQ $16, SI \
	ADDQ $128, DI

// func bf16DotHoistAVX(x *float32, codes *byte, ngroups, gs int, planes *[64]byte, muls *float32) float32
// Σ_g muls[g]·Σ_{e∈g} base[code[e]]·x[e] over ngroups groups of gs (a
// multiple of 32) 4-bit codes, with the bfloat16-plane decode of
// lut4DotBF16AVX but the group scale applied once per group to the
// group's dot product (the element values themselves are exact, so only
// the rounding of the sums differs). Two accumulators (even and odd
// groups) keep the scale FMAs independent.
TEXT ·bf16DotHoistAVX(SB), NOSPLIT, $0-52
	MOVQ x+0(FP), DI
	MOVQ codes+8(FP), SI
	MOVQ ngroups+16(FP), BX
	MOVQ gs+24(FP), DX
	MOVQ planes+32(FP), R9
	MOVQ muls+40(FP), R10
	SHRQ $5, DX
	MOVL $0x0F0F0F0F, AX
	VMOVQ AX, X15
	VPBROADCASTD X15, X15
	VMOVDQU (R9), Y14
	VMOVDQU 32(R9), Y13
	VPXOR Y12, Y12, Y12
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	TESTQ BX, BX
	JZ    bhdone
bhgroup:
	PREFETCHT0 1024(SI)
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	MOVQ DX, CX
bhstep:
	BF16STEP
	DECQ CX
	JNZ  bhstep
	VADDPS Y3, Y2, Y2
	VBROADCASTSS (R10), Y9
	VFMADD231PS Y9, Y2, Y0
	ADDQ $4, R10
	DECQ BX
	JZ   bhdone
	PREFETCHT0 1024(SI)
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	MOVQ DX, CX
bhstep2:
	BF16STEP
	DECQ CX
	JNZ  bhstep2
	VADDPS Y3, Y2, Y2
	VBROADCASTSS (R10), Y9
	VFMADD231PS Y9, Y2, Y1
	ADDQ $4, R10
	DECQ BX
	JNZ  bhgroup
bhdone:
	VADDPS Y1, Y0, Y0
	HSUM_Y0
	MOVSS X0, ret+48(FP)
	RET

// func bf16DotHoistS1AVX(x *float32, codes *byte, ngroups, gs int, planes *[64]byte, scodes *byte, mul1 *[256]float32) float32
// bf16DotHoistAVX for 1-byte scale codes: the multiplier of group g is
// mul1[scodes[g]], read here rather than gathered into a slice per row.
TEXT ·bf16DotHoistS1AVX(SB), NOSPLIT, $0-60
	MOVQ x+0(FP), DI
	MOVQ codes+8(FP), SI
	MOVQ ngroups+16(FP), BX
	MOVQ gs+24(FP), DX
	MOVQ planes+32(FP), R9
	MOVQ scodes+40(FP), R10
	MOVQ mul1+48(FP), R11
	SHRQ $5, DX
	MOVL $0x0F0F0F0F, AX
	VMOVQ AX, X15
	VPBROADCASTD X15, X15
	VMOVDQU (R9), Y14
	VMOVDQU 32(R9), Y13
	VPXOR Y12, Y12, Y12
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	TESTQ BX, BX
	JZ    b1done
b1group:
	PREFETCHT0 1024(SI)
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	MOVQ DX, CX
b1step:
	BF16STEP
	DECQ CX
	JNZ  b1step
	VADDPS Y3, Y2, Y2
	MOVBQZX (R10), AX
	VBROADCASTSS (R11)(AX*4), Y9
	VFMADD231PS Y9, Y2, Y0
	INCQ R10
	DECQ BX
	JZ   b1done
	PREFETCHT0 1024(SI)
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	MOVQ DX, CX
b1step2:
	BF16STEP
	DECQ CX
	JNZ  b1step2
	VADDPS Y3, Y2, Y2
	MOVBQZX (R10), AX
	VBROADCASTSS (R11)(AX*4), Y9
	VFMADD231PS Y9, Y2, Y1
	INCQ R10
	DECQ BX
	JNZ  b1group
b1done:
	VADDPS Y1, Y0, Y0
	HSUM_Y0
	MOVSS X0, ret+56(FP)
	RET

// BF16DEC decodes the 32 codes of the 16 bytes at soff(SI) into Y4..Y7
// (bfloat16 planes as in BF16STEP, Y12 = 0xFFFF0000 in every dword): the
// words are widened with a shift and a mask rather than unpacks, so x must
// be in deinterleave16w order.
#define BF16DEC(soff) \
	VMOVDQU soff(SI), X4 \
	VPSRLW $4, X4, X5 \
	VPAND X15, X4, X4 \
	VPAND X15, X5, X5 \
	VINSERTI128 $1, X5, Y4, Y4 \
	VPSHUFB Y4, Y14, Y5 \
	VPSHUFB Y4, Y13, Y6 \
	VPUNPCKLBW Y5, Y6, Y7 \
	VPUNPCKHBW Y5, Y6, Y8 \
	VPSLLD $16, Y7, Y4 \
	VPAND Y12, Y7, Y5 \
	VPSLLD $16, Y8, Y6 \
	VPAND Y12, Y8, Y7

// BF16G32 is one whole group of 32: decode at soff(SI), dot with the 32
// floats at xoff(DI), scale by mul1[scodes[k]] (k at koff(R10)) into acc.
#define BF16G32(soff, xoff, koff, acc) \
	BF16DEC(soff) \
	VMULPS xoff(DI), Y4, Y2 \
	VMULPS xoff+32(DI), Y5, Y3 \
	VFMADD231PS xoff+64(DI), Y6, Y2 \
	VFMADD231PS xoff+96(DI), Y7, Y3 \
	VADDPS Y3, Y2, Y2 \
	MOVBQZX koff(R10), AX \
	VBROADCASTSS (R11)(AX*4), Y9 \
	VFMADD231PS Y9, Y2, acc

// func bf16Dot32S1AVX(x *float32, codes *byte, ngroups int, planes *[64]byte, scodes *byte, mul1 *[256]float32) float32
// bf16DotHoistS1AVX for groups of exactly 32 (MXFP4), two groups per
// iteration without per-group loop bookkeeping; x is permuted by
// deinterleave16w.
TEXT ·bf16Dot32S1AVX(SB), NOSPLIT, $0-52
	MOVQ x+0(FP), DI
	MOVQ codes+8(FP), SI
	MOVQ ngroups+16(FP), BX
	MOVQ planes+24(FP), R9
	MOVQ scodes+32(FP), R10
	MOVQ mul1+40(FP), R11
	MOVL $0x0F0F0F0F, AX
	VMOVQ AX, X15
	VPBROADCASTD X15, X15
	VMOVDQU (R9), Y14
	VMOVDQU 32(R9), Y13
	MOVL $0xFFFF0000, AX
	VMOVQ AX, X12
	VPBROADCASTD X12, Y12
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	MOVQ BX, CX
	SHRQ $1, CX
	JZ   g32tail
g32pair:
	PREFETCHT0 1024(SI)
	BF16G32(0, 0, 0, Y0)
	BF16G32(16, 128, 1, Y1)
	ADDQ $32, SI
	ADDQ $256, DI
	ADDQ $2, R10
	DECQ CX
	JNZ  g32pair
g32tail:
	TESTQ $1, BX
	JZ    g32done
	BF16G32(0, 0, 0, Y0)
g32done:
	VADDPS Y1, Y0, Y0
	HSUM_Y0
	MOVSS X0, ret+48(FP)
	RET
