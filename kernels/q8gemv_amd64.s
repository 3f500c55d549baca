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

// Q8PAIR adds the dot products of the 64 codes of block pair k (32 bytes
// at k*32(SI)) with their int8 activations (64 bytes at k*64(DI), the
// q8Act order) to ACC: table lookup (Y14) of the low and high nibbles
// (mask Y15), VPMADDUBSW with the activations, VPMADDWD with ones (Y9)
// into eight dword lanes (four per block), minus the offset corrections
// (k*32(R12)), converted to float32 and multiplied by the pair's scales
// (lanes of Y8 spread by PERM).
#define Q8PAIR(k, PERM, ACC) \
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
	VPSUBD (k*32)(R12), Y4, Y4 \
	VCVTDQ2PS Y4, Y4 \
	VPERMPS Y8, PERM, Y6 \
	VFMADD231PS Y6, Y4, ACC

// func q8MXRowsAVX(codes *byte, rb int, scales *byte, rows, nquads int, xq *int8, xs *float32, xc *int32, lut *[16]byte, y *float32)
// For each of rows rows (codes rb bytes apart, E8M0 scale codes 8·nquads
// bytes apart) adds to y[r] the int8-activation dot product described in
// q8gemv.go; q8MXRowsGo is the reference.
TEXT ·q8MXRowsAVX(SB), NOSPLIT, $0-80
	MOVQ codes+0(FP), R8
	MOVQ rb+8(FP), R9
	MOVQ scales+16(FP), R10
	MOVQ rows+24(FP), BX
	MOVQ nquads+32(FP), DX
	MOVQ y+72(FP), R13
	MOVQ lut+64(FP), AX
	VBROADCASTI128 (AX), Y14
	MOVL $0x0F0F0F0F, AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15
	MOVL $0x00010001, AX
	VMOVD AX, X9
	VPBROADCASTD X9, Y9
	LEAQ q8perm<>(SB), AX
	VMOVDQU (AX), Y10
	VMOVDQU 32(AX), Y11
	VMOVDQU 64(AX), Y12
	VMOVDQU 96(AX), Y13
	TESTQ BX, BX
	JZ    q8done

q8row:
	MOVQ R8, SI
	MOVQ xq+40(FP), DI
	MOVQ xs+48(FP), R11
	MOVQ xc+56(FP), R12
	MOVQ DX, CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1

q8quad:
	VPMOVZXBD (R10), Y8
	VPSLLD $23, Y8, Y8
	VMULPS (R11), Y8, Y8
	Q8PAIR(0, Y10, Y0)
	Q8PAIR(1, Y11, Y1)
	Q8PAIR(2, Y12, Y0)
	Q8PAIR(3, Y13, Y1)
	ADDQ $128, SI
	ADDQ $256, DI
	ADDQ $8, R10
	ADDQ $32, R11
	ADDQ $128, R12
	DECQ CX
	JNZ  q8quad

	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VADDSS (R13), X0, X0
	VMOVSS X0, (R13)
	ADDQ $4, R13
	ADDQ R9, R8
	DECQ BX
	JNZ  q8row

q8done:
	VZEROUPPER
	RET
