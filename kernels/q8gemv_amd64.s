//go:build amd64 && !purego

#include "textflag.h"

// Lane indices spreading the scales of blocks 2k and 2k+1 over the four
// dword lanes of each (VPERMPS).
DATA q8perm<>+0(SB)/8, $0x0000000000000000
DATA q8perm<>+8(SB)/8, $0x0000000000000000
DATA q8perm<>+16(SB)/8, $0x0000000100000001
DATA q8perm<>+24(SB)/8, $0x0000000100000001
DATA q8perm<>+32(SB)/8, $0x0000000200000002
DATA q8perm<>+40(SB)/8, $0x0000000200000002
DATA q8perm<>+48(SB)/8, $0x0000000300000003
DATA q8perm<>+56(SB)/8, $0x0000000300000003
DATA q8perm<>+64(SB)/8, $0x0000000400000004
DATA q8perm<>+72(SB)/8, $0x0000000400000004
DATA q8perm<>+80(SB)/8, $0x0000000500000005
DATA q8perm<>+88(SB)/8, $0x0000000500000005
DATA q8perm<>+96(SB)/8, $0x0000000600000006
DATA q8perm<>+104(SB)/8, $0x0000000600000006
DATA q8perm<>+112(SB)/8, $0x0000000700000007
DATA q8perm<>+120(SB)/8, $0x0000000700000007
GLOBL q8perm<>(SB), RODATA|NOPTR, $128

// [0 0 1 1 2 2 3 3] and [4 4 5 5 6 6 7 7]: the lanes of the four groups of
// 16 of a block pair (NVFP4) in the multipliers of eight groups.
DATA q8gperm<>+0(SB)/8, $0x0000000000000000
DATA q8gperm<>+8(SB)/8, $0x0000000100000001
DATA q8gperm<>+16(SB)/8, $0x0000000200000002
DATA q8gperm<>+24(SB)/8, $0x0000000300000003
DATA q8gperm<>+32(SB)/8, $0x0000000400000004
DATA q8gperm<>+40(SB)/8, $0x0000000500000005
DATA q8gperm<>+48(SB)/8, $0x0000000600000006
DATA q8gperm<>+56(SB)/8, $0x0000000700000007
GLOBL q8gperm<>(SB), RODATA|NOPTR, $64

// Q8DOT leaves in Y4 the eight int32 lane sums of the 64 codes of block
// pair k (32 bytes at k*32(SI)) with their int8 activations (64 bytes at
// k*64(DI), the q8Act order), converted to float32: table lookup (Y14) of
// the low and high nibbles (mask Y15), VPMADDUBSW with the activations,
// VPMADDWD with ones (Y9).
#define Q8DOT(k) \
	VMOVDQU (k*32)(SI), Y4 \
	VPSRLW $4, Y4, Y5 \
	VPAND Y15, Y4, Y4 \
	VPAND Y15, Y5, Y5 \
	VPSHUFB Y4, Y14, Y4 \
	VPSHUFB Y5, Y14, Y5 \
	VPMADDUBSW (k*64)(DI), Y4, Y4 \
	VPMADDUBSW (k*64+32)(DI), Y5, Y5 \
	VPADDW Y5, Y4, Y4 \
	VPMADDWD Y9, Y4, Y4 \
	VCVTDQ2PS Y4, Y4

// Q8PAIR adds pair k's dot products to ACC: Q8DOT, minus 12 (Y7) times
// the quarter block sums (k*32(R12)), times the pair's scales (lanes of
// Y8 spread by PERM).
#define Q8PAIR(k, PERM, ACC) \
	Q8DOT(k) \
	VFNMADD231PS (k*32)(R12), Y7, Y4 \
	VPERMPS Y8, PERM, Y6 \
	VFMADD231PS Y6, Y4, ACC

// Q8F16PAIR is Q8PAIR with per-block doubled zero points (lanes of Y7
// spread by PERM) in place of the constant 12.
#define Q8F16PAIR(k, PERM, ACC) \
	Q8DOT(k) \
	VPERMPS Y7, PERM, Y6 \
	VFNMADD231PS (k*32)(R12), Y6, Y4 \
	VPERMPS Y8, PERM, Y6 \
	VFMADD231PS Y6, Y4, ACC

// Q8STEP runs PAIR on the four block pairs of a step of eight blocks
// (alternating the accumulators Y0 and Y1), advances the code, activation,
// scale and quarter-sum pointers past the step and decrements CX.
#define Q8STEP(PAIR) \
	PAIR(0, Y10, Y0) \
	PAIR(1, Y11, Y1) \
	PAIR(2, Y12, Y0) \
	PAIR(3, Y13, Y1) \
	ADDQ $128, SI \
	ADDQ $256, DI \
	ADDQ $32, R11 \
	ADDQ $128, R12 \
	DECQ CX

// Q8CONSTS loads the kernels' constants: the nibble mask (Y15), int16
// ones (Y9) and the four pair permutations (Y10..Y13).
#define Q8CONSTS \
	MOVL $0x0F0F0F0F, AX \
	VMOVD AX, X15 \
	VPBROADCASTD X15, Y15 \
	MOVL $0x00010001, AX \
	VMOVD AX, X9 \
	VPBROADCASTD X9, Y9 \
	LEAQ q8perm<>(SB), AX \
	VMOVDQU (AX), Y10 \
	VMOVDQU 32(AX), Y11 \
	VMOVDQU 64(AX), Y12 \
	VMOVDQU 96(AX), Y13

// Q8PROLOGUE loads the arguments the E8M0 and E4M3 kernels share (codes
// R8, row bytes R9, scales R10, rows BX, steps DX, y R13 from Y, the code
// table Y14) and the constants.
#define Q8PROLOGUE(Y) \
	MOVQ codes+0(FP), R8 \
	MOVQ rb+8(FP), R9 \
	MOVQ scales+16(FP), R10 \
	MOVQ rows+24(FP), BX \
	MOVQ nquads+32(FP), DX \
	MOVQ Y, R13 \
	MOVQ lut+64(FP), AX \
	VBROADCASTI128 (AX), Y14 \
	Q8CONSTS

// Q8ROWSTART points SI at the row's codes (R8), DI, R11 and R12 at the
// activations, their scales and quarter sums, sets the step count CX from
// DX and clears the accumulators Y0 and Y1.
#define Q8ROWSTART(XQ, XS, SQ) \
	MOVQ R8, SI \
	MOVQ XQ, DI \
	MOVQ XS, R11 \
	MOVQ SQ, R12 \
	MOVQ DX, CX \
	VXORPS Y0, Y0, Y0 \
	VXORPS Y1, Y1, Y1

// Q8NVPAIR is Q8PAIR with the pair's lanes of the group multipliers S
// (two lanes a group) picked by PERM.
#define Q8NVPAIR(k, S, PERM, ACC) \
	Q8DOT(k) \
	VFNMADD231PS (k*32)(R12), Y7, Y4 \
	VPERMPS S, PERM, Y6 \
	VFMADD231PS Y6, Y4, ACC

// Q8ROWEND adds the accumulators Y0 and Y1 horizontally (in the order of
// q8HSum) to the row's y (R13), moves to the next y and code row (R8 +=
// R9) and decrements the row count BX.
#define Q8ROWEND \
	VADDPS Y1, Y0, Y0 \
	VEXTRACTF128 $1, Y0, X1 \
	VADDPS X1, X0, X0 \
	VHADDPS X0, X0, X0 \
	VHADDPS X0, X0, X0 \
	VADDSS (R13), X0, X0 \
	VMOVSS X0, (R13) \
	ADDQ $4, R13 \
	ADDQ R9, R8 \
	DECQ BX

// func q8MXRowsAVX(codes *byte, rb int, scales *byte, rows, nquads int, xq *int8, xs, sq *float32, lut *[16]byte, y *float32)
// For each of rows rows (codes rb bytes apart, E8M0 scale codes 8·nquads
// bytes apart) adds to y[r] the int8-activation dot product described in
// q8gemv.go; q8MXRowsGo is the reference.
TEXT ·q8MXRowsAVX(SB), NOSPLIT, $0-80
	Q8PROLOGUE(y+72(FP))
	MOVL $0x41400000, AX // 12.0
	VMOVD AX, X7
	VBROADCASTSS X7, Y7
	TESTQ BX, BX
	JZ    q8done

q8row:
	Q8ROWSTART(xq+40(FP), xs+48(FP), sq+56(FP))

q8quad:
	VPMOVZXBD (R10), Y8
	VPSLLD $23, Y8, Y8
	VMULPS (R11), Y8, Y8
	ADDQ $8, R10
	Q8STEP(Q8PAIR)
	JNZ  q8quad

	Q8ROWEND
	JNZ  q8row

q8done:
	VZEROUPPER
	RET

// Byte order that turns the packed words [w0 w4 w1 w5 w2 w6 w3 w7] of
// each lane (see q8QuantAVX) into [w0 w1 … w7].
DATA q8ileave<>+0(SB)/8, $0x0B0A030209080100
DATA q8ileave<>+8(SB)/8, $0x0F0E07060D0C0504
GLOBL q8ileave<>(SB), RODATA|NOPTR, $16

DATA q8const<>+0(SB)/4, $0x7FFFFFFF // |x| mask
DATA q8const<>+4(SB)/4, $127.0
DATA q8const<>+8(SB)/4, $0.5
DATA q8const<>+12(SB)/4, $0x5F800000 // 2^64
GLOBL q8const<>(SB), RODATA|NOPTR, $16

// func q8QuantAVX(x *float32, nblocks int, q *int8, s, sq *float32) bool
// q8Act.quantize for nblocks (even) blocks of 32: per block the largest
// |x| (as an integer maximum of the magnitude bits, which also finds NaN
// and ±Inf: false is returned at the first such block), id = 127/amax,
// q = VCVTPS2DQ(x·id) (round to nearest even, as the Go code's 1.5·2^23
// addition), s = amax/127·0.5 and sq = Σq over each quarter; the bytes are
// stored in the q8Act order: even columns at 64p+16h, odd ones 32 further.
TEXT ·q8QuantAVX(SB), NOSPLIT, $0-41
	MOVQ x+0(FP), SI
	MOVQ nblocks+8(FP), CX
	MOVQ q+16(FP), DI
	MOVQ s+24(FP), R8
	MOVQ sq+32(FP), R9
	LEAQ q8const<>(SB), R10
	VPBROADCASTD (R10), Y15
	VMOVSS 4(R10), X14
	VMOVSS 8(R10), X13
	LEAQ q8ileave<>(SB), AX
	VBROADCASTI128 (AX), Y12
	XORQ DX, DX // h·16: 0 for even blocks, 16 for odd ones
	TESTQ CX, CX
	JZ    qqok

qqblock:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	VPAND Y15, Y0, Y4
	VPAND Y15, Y1, Y5
	VPAND Y15, Y2, Y6
	VPAND Y15, Y3, Y7
	VPMAXSD Y5, Y4, Y4
	VPMAXSD Y7, Y6, Y6
	VPMAXSD Y6, Y4, Y4
	VEXTRACTI128 $1, Y4, X5
	VPMAXSD X5, X4, X4
	VPSHUFD $0x4E, X4, X5
	VPMAXSD X5, X4, X4
	VPSHUFD $0xB1, X4, X5
	VPMAXSD X5, X4, X4
	VMOVD X4, AX
	CMPL  AX, $0x7F800000
	JAE   qqbad
	VXORPS X6, X6, X6
	TESTL AX, AX
	JZ    qqzero
	CMPL  AX, $0x1F800000 // q8Tiny = 2^-64
	JAE   qqid
	// A tiny block: x and amax times 2^64 (exact), so 127/amax is finite.
	VBROADCASTSS 12(R10), Y5
	VMULPS Y5, Y0, Y0
	VMULPS Y5, Y1, Y1
	VMULPS Y5, Y2, Y2
	VMULPS Y5, Y3, Y3
	VMULSS X5, X4, X6
	VDIVSS X6, X14, X6 // id = 127/(amax·2^64)
	JMP   qqzero
qqid:
	VDIVSS X4, X14, X6 // id = 127/amax
qqzero:
	VDIVSS X14, X4, X7 // amax/127
	VMULSS X13, X7, X7
	VMOVSS X7, (R8)
	VBROADCASTSS X6, Y6
	VMULPS Y6, Y0, Y0
	VMULPS Y6, Y1, Y1
	VMULPS Y6, Y2, Y2
	VMULPS Y6, Y3, Y3
	VCVTPS2DQ Y0, Y0
	VCVTPS2DQ Y1, Y1
	VCVTPS2DQ Y2, Y2
	VCVTPS2DQ Y3, Y3
	// sq = the sums of q over columns 0-7, 8-15, 16-23 and 24-31 (the
	// four lanes of the GEMV kernels): Y0..Y3 summed horizontally.
	VPHADDD Y1, Y0, Y4
	VPHADDD Y3, Y2, Y5
	VPHADDD Y5, Y4, Y4
	VEXTRACTI128 $1, Y4, X5
	VPADDD X5, X4, X4
	VCVTDQ2PS X4, X4
	VMOVUPS X4, (R9)
	// Even and odd columns: per lane, dwords {0,2} / {1,3} of x[0:8]
	// and x[8:16] (then x[16:24], x[24:32]).
	VSHUFPS $0x88, Y1, Y0, Y4 // evens [x0 x2 x8 x10 | x4 x6 x12 x14]
	VSHUFPS $0xDD, Y1, Y0, Y5 // odds
	VSHUFPS $0x88, Y3, Y2, Y6 // evens [x16 x18 x24 x26 | x20 x22 x28 x30]
	VSHUFPS $0xDD, Y3, Y2, Y7
	VPACKSSDW Y6, Y4, Y4 // words [x0 x2 x8 x10 x16 x18 x24 x26 | x4 x6 x12 x14 x20 x22 x28 x30]
	VPACKSSDW Y7, Y5, Y5
	VPACKSSWB Y5, Y4, Y4 // bytes [evens₀ odds₀ | evens₁ odds₁]
	VPERMQ $0xD8, Y4, Y4 // [evens₀ evens₁ | odds₀ odds₁]
	VPSHUFB Y12, Y4, Y4  // words of the two halves interleaved: x0 x2 x4 …
	VMOVDQU X4, (DI)(DX*1)
	VEXTRACTI128 $1, Y4, 32(DI)(DX*1)
	ADDQ $128, SI
	ADDQ $4, R8
	ADDQ $16, R9
	XORQ $16, DX
	JNZ  qqnext
	ADDQ $64, DI // a pair is done
qqnext:
	DECQ CX
	JNZ  qqblock

qqok:
	VZEROUPPER
	MOVB $1, ret+40(FP)
	RET

qqbad:
	VZEROUPPER
	MOVB $0, ret+40(FP)
	RET

// func q8F16RowsAVX(codes *byte, rb int, scales, zeros *byte, zquad, rows, nquads, k int, xq *int8, xs, sq *float32, lut *[16]byte, kperm *[8]int32, y *float32)
// q8MXRowsAVX for binary16 group scales (groups of k = 1, 2 or 4 blocks;
// 16/k scale bytes per step of eight blocks, rows contiguous) and zero
// points (8/k bytes per step at zeros, advanced by zquad: 0 repeats one
// constant step); each lane's offset correction is twice the block's
// zero point times its quarter sum. q8F16RowsGo is the reference.
TEXT ·q8F16RowsAVX(SB), NOSPLIT, $0-112
	MOVQ codes+0(FP), R8
	MOVQ rb+8(FP), R9
	MOVQ scales+16(FP), R10
	MOVQ zeros+24(FP), R14
	MOVQ rows+40(FP), BX
	MOVQ nquads+48(FP), DX
	MOVQ y+104(FP), R13
	MOVQ lut+88(FP), AX
	VBROADCASTI128 (AX), Y14
	MOVQ kperm+96(FP), AX
	VMOVDQU (AX), Y3
	Q8CONSTS
	TESTQ BX, BX
	JZ    qfdone

qfrow:
	Q8ROWSTART(xq+64(FP), xs+72(FP), sq+80(FP))

qfquad:
	// Scales and zero points of the step's 8/k groups.
	CMPQ k+56(FP), $2
	JEQ  qfk2
	JGT  qfk4
	VCVTPH2PS (R10), Y8
	MOVQ (R14), AX
	ADDQ $16, R10
	JMP  qfloaded
qfk2:
	VCVTPH2PS (R10), X8
	MOVL (R14), AX
	ADDQ $8, R10
	JMP  qfloaded
qfk4:
	MOVL (R10), AX
	VMOVD AX, X8
	VCVTPH2PS X8, X8
	MOVWLZX (R14), AX
	ADDQ $4, R10
qfloaded:
	VMOVQ AX, X7
	VPMOVZXBD X7, Y7
	VCVTDQ2PS Y7, Y7
	VADDPS Y7, Y7, Y7
	VPERMPS Y7, Y3, Y7
	VPERMPS Y8, Y3, Y8
	VMULPS (R11), Y8, Y8
	ADDQ zquad+32(FP), R14
	Q8STEP(Q8F16PAIR)
	JNZ  qfquad

	Q8ROWEND
	JNZ  qfrow

qfdone:
	VZEROUPPER
	RET

// func q8NVRowsAVX(codes *byte, rb int, scales *byte, rows, nquads int, xq *int8, xs, sq *float32, lut *[16]byte, tsc float32, y *float32)
// q8MXRowsAVX for NVFP4: E4M3 scale codes of groups of 16 (16 bytes per
// step of eight blocks, rows contiguous), each read as the float32 with
// bits code<<20 and multiplied by tsc (the tensor scale times 2^120),
// which gives fl(e4m3·tensor scale); the group multipliers times the
// blocks' activation scales are formed once per step for the 16 groups
// (Y2: groups 0-7, Y3: 8-15), and each pair picks its four groups' lanes
// with the pattern [0 0 1 1 2 2 3 3] (Y10) or [4 4 5 5 6 6 7 7] (Y11).
// q8NVRowsGo is the reference.
TEXT ·q8NVRowsAVX(SB), NOSPLIT, $0-88
	Q8PROLOGUE(y+80(FP))
	VBROADCASTSS tsc+72(FP), Y13
	LEAQ q8gperm<>(SB), AX
	VMOVDQU (AX), Y10
	VMOVDQU 32(AX), Y11
	MOVL $0x41400000, AX // 12.0
	VMOVD AX, X7
	VBROADCASTSS X7, Y7
	TESTQ BX, BX
	JZ    qndone

qnrow:
	Q8ROWSTART(xq+40(FP), xs+48(FP), sq+56(FP))

qnquad:
	VMOVUPS (R11), Y8
	VPMOVZXBD (R10), Y2
	VPMOVZXBD 8(R10), Y3
	VPSLLD $20, Y2, Y2
	VPSLLD $20, Y3, Y3
	VMULPS Y13, Y2, Y2
	VMULPS Y13, Y3, Y3
	VPERMPS Y8, Y10, Y4
	VPERMPS Y8, Y11, Y5
	VMULPS Y4, Y2, Y2
	VMULPS Y5, Y3, Y3
	ADDQ $16, R10
	Q8NVPAIR(0, Y2, Y10, Y0)
	Q8NVPAIR(1, Y2, Y11, Y1)
	Q8NVPAIR(2, Y3, Y10, Y0)
	Q8NVPAIR(3, Y3, Y11, Y1)
	ADDQ $128, SI
	ADDQ $256, DI
	ADDQ $32, R11
	ADDQ $128, R12
	DECQ CX
	JNZ  qnquad

	Q8ROWEND
	JNZ  qnrow

qndone:
	VZEROUPPER
	RET
