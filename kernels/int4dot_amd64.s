//go:build amd64 && !purego

#include "textflag.h"
#include "hsum_amd64.h"

// int4shifts<> holds the nibble shift counts 0, 4, ..., 28 (one YMM).
DATA int4shifts<>+0(SB)/4, $0
DATA int4shifts<>+4(SB)/4, $4
DATA int4shifts<>+8(SB)/4, $8
DATA int4shifts<>+12(SB)/4, $12
DATA int4shifts<>+16(SB)/4, $16
DATA int4shifts<>+20(SB)/4, $20
DATA int4shifts<>+24(SB)/4, $24
DATA int4shifts<>+28(SB)/4, $28
GLOBL int4shifts<>(SB), RODATA|NOPTR, $32

// INT4_STEP decodes 32 codes (16 bytes at SI) and accumulates their
// products with x (128 bytes at DI) into Y2..Y5, advancing SI and DI.
#define INT4_STEP \
	VPBROADCASTD (SI), Y6; VPBROADCASTD 4(SI), Y7; VPBROADCASTD 8(SI), Y8; VPBROADCASTD 12(SI), Y9 \
	VPSRLVD Y15, Y6, Y6; VPSRLVD Y15, Y7, Y7; VPSRLVD Y15, Y8, Y8; VPSRLVD Y15, Y9, Y9 \
	VPAND Y14, Y6, Y6; VPAND Y14, Y7, Y7; VPAND Y14, Y8, Y8; VPAND Y14, Y9, Y9 \
	VCVTDQ2PS Y6, Y6; VCVTDQ2PS Y7, Y7; VCVTDQ2PS Y8, Y8; VCVTDQ2PS Y9, Y9 \
	VFMADD231PS (DI), Y6, Y2; VFMADD231PS 32(DI), Y7, Y3 \
	VFMADD231PS 64(DI), Y8, Y4; VFMADD231PS 96(DI), Y9, Y5 \
	ADDQ $16, SI; ADDQ $128, DI

// INT4_GROUP_END reduces Y2..Y5 as (Y2+Y3)+(Y4+Y5), subtracts offs[g]·xsv[g]
// and adds muls[g] times the result into acc, advancing R8, R10 and R11.
#define INT4_GROUP_END(acc) \
	VADDPS Y3, Y2, Y2; VADDPS Y5, Y4, Y4; VADDPS Y4, Y2, Y2 \
	VBROADCASTSS (R11), Y6; VFNMADD231PS (R8), Y6, Y2 \
	VBROADCASTSS (R10), Y7; VFMADD231PS Y7, Y2, acc \
	ADDQ $32, R8; ADDQ $4, R10; ADDQ $4, R11

// func int4DotAVX(x *float32, codes *byte, ngroups, gs int, xsv, muls, offs *float32) float32
// Σ_g muls[g]·(Σ_{e∈g} code[e]·x[e] − offs[g]·Σ_{e∈g} x[e]) over ngroups
// groups of gs (a multiple of 32) 4-bit integer codes, low nibble first; x
// in natural order. Each dword of codes (8 codes) is broadcast to all
// lanes, VPSRLVD moves nibble l into lane l and VCVTDQ2PS makes it a
// float, so decoding needs no shuffle. Per group the products go to four
// partial sums (one per dword of a 16-byte step), reduced as
// (P0+P1)+(P2+P3); xsv[8g:8g+8] holds the same reduction of x alone (see
// int4XSums), so offs[g]·xsv cancels exactly where every code equals the
// zero point.
TEXT ·int4DotAVX(SB), NOSPLIT, $0-60
	MOVQ x+0(FP), DI
	MOVQ codes+8(FP), SI
	MOVQ ngroups+16(FP), BX
	MOVQ gs+24(FP), DX
	MOVQ xsv+32(FP), R8
	MOVQ muls+40(FP), R10
	MOVQ offs+48(FP), R11
	SHRQ $5, DX
	VMOVDQU int4shifts<>(SB), Y15
	MOVL $15, AX
	VMOVD AX, X14
	VPBROADCASTD X14, Y14
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	TESTQ BX, BX
	JZ    i4done
i4group:
	PREFETCHT0 1024(SI)
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	MOVQ DX, CX
i4step:
	INT4_STEP
	DECQ CX
	JNZ  i4step
	INT4_GROUP_END(Y0)
	DECQ BX
	JZ   i4done
	PREFETCHT0 1024(SI)
	// Second accumulator for odd groups (two independent FMA chains).
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	MOVQ DX, CX
i4step2:
	INT4_STEP
	DECQ CX
	JNZ  i4step2
	INT4_GROUP_END(Y1)
	DECQ BX
	JNZ  i4group
i4done:
	VADDPS Y1, Y0, Y0
	HSUM_Y0
	MOVSS X0, ret+56(FP)
	RET

// I4STEP decodes 32 codes (16 bytes at SI; Y15 shift counts, Y14 nibble
// mask) and adds their products with x (128 bytes at DI) to Y2..Y5.
#define I4STEP \
	VPBROADCASTD (SI), Y6 \
	VPBROADCASTD 4(SI), Y7 \
	VPBROADCASTD 8(SI), Y8 \
	VPBROADCASTD 12(SI), Y9 \
	VPSRLVD Y15, Y6, Y6 \
	VPSRLVD Y15, Y7, Y7 \
	VPSRLVD Y15, Y8, Y8 \
	VPSRLVD Y15, Y9, Y9 \
	VPAND Y14, Y6, Y6 \
	VPAND Y14, Y7, Y7 \
	VPAND Y14, Y8, Y8 \
	VPAND Y14, Y9, Y9 \
	VCVTDQ2PS Y6, Y6 \
	VCVTDQ2PS Y7, Y7 \
	VCVTDQ2PS Y8, Y8 \
	VCVTDQ2PS Y9, Y9 \
	VFMADD231PS (DI), Y6, Y2 \
	VFMADD231PS 32(DI), Y7, Y3 \
	VFMADD231PS 64(DI), Y8, Y4 \
	VFMADD231PS 96(DI), Y9, Y5 \
	ADDQ $16, SI \
	ADDQ $128, DI

// I4GROUPEND reduces Y2..Y5, subtracts the zero point (byte at R11, as a
// float) times xsv (R8), multiplies by the binary16 scale at R10 and adds
// the result to acc; it advances R8, R10 and R11 (by R12).
#define I4GROUPEND(acc) \
	VADDPS Y3, Y2, Y2 \
	VADDPS Y5, Y4, Y4 \
	VADDPS Y4, Y2, Y2 \
	MOVBLZX (R11), AX \
	VCVTSI2SSL AX, X6, X6 \
	VBROADCASTSS X6, Y6 \
	VFNMADD231PS (R8), Y6, Y2 \
	MOVWLZX (R10), AX \
	VMOVD AX, X7 \
	VCVTPH2PS X7, X7 \
	VBROADCASTSS X7, Y7 \
	VFMADD231PS Y7, Y2, acc \
	ADDQ $32, R8 \
	ADDQ $2, R10 \
	ADDQ R12, R11

// func int4DotS16AVX(x *float32, codes *byte, ngroups, gs int, xsv *float32, scodes, zeros *byte, zstride int) float32
// int4DotAVX with the scales read here as binary16 codes (VCVTPH2PS,
// exact) and the zero point of group g as the byte zeros[g·zstride]
// (zstride 0 for a symmetric format's single zero point).
TEXT ·int4DotS16AVX(SB), NOSPLIT, $0-68
	MOVQ x+0(FP), DI
	MOVQ codes+8(FP), SI
	MOVQ ngroups+16(FP), BX
	MOVQ gs+24(FP), DX
	MOVQ xsv+32(FP), R8
	MOVQ scodes+40(FP), R10
	MOVQ zeros+48(FP), R11
	MOVQ zstride+56(FP), R12
	SHRQ $5, DX
	VMOVDQU int4shifts<>(SB), Y15
	MOVL $15, AX
	VMOVD AX, X14
	VPBROADCASTD X14, Y14
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	TESTQ BX, BX
	JZ    h4done
h4group:
	PREFETCHT0 1024(SI)
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	MOVQ DX, CX
h4step:
	I4STEP
	DECQ CX
	JNZ  h4step
	I4GROUPEND(Y0)
	DECQ BX
	JZ   h4done
	PREFETCHT0 1024(SI)
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	MOVQ DX, CX
h4step2:
	I4STEP
	DECQ CX
	JNZ  h4step2
	I4GROUPEND(Y1)
	DECQ BX
	JNZ  h4group
h4done:
	VADDPS Y1, Y0, Y0
	HSUM_Y0
	MOVSS X0, ret+64(FP)
	RET
