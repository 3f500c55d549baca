//go:build amd64

#include "textflag.h"

// MXFP4 encoding of BF16 blocks with AVX2 (see mxfp4BlocksAVX2 in
// mxfp4_amd64.go). Thresholds of the E2M1 grid as BF16 magnitude bits at
// block exponent 0, adjusted for the tie rule: a magnitude increments the
// code when it is greater than 0.25, 0.75−, 1.25, 1.75−, 2.5, 3.5−, 5
// (ties at 0.25, 1.25, 2.5, 5 round down to the even code, ties at 0.75,
// 1.75, 3.5 round up), i.e. 0x3E80, 0x3F3F, 0x3FA0, 0x3FDF, 0x4020, 0x405F,
// 0x40A0; the block exponent e shifts them by e<<7.
DATA mxThr<>+0(SB)/8, $0x3e803e803e803e80
DATA mxThr<>+8(SB)/8, $0x3e803e803e803e80
DATA mxThr<>+16(SB)/8, $0x3e803e803e803e80
DATA mxThr<>+24(SB)/8, $0x3e803e803e803e80
DATA mxThr<>+32(SB)/8, $0x3f3f3f3f3f3f3f3f
DATA mxThr<>+40(SB)/8, $0x3f3f3f3f3f3f3f3f
DATA mxThr<>+48(SB)/8, $0x3f3f3f3f3f3f3f3f
DATA mxThr<>+56(SB)/8, $0x3f3f3f3f3f3f3f3f
DATA mxThr<>+64(SB)/8, $0x3fa03fa03fa03fa0
DATA mxThr<>+72(SB)/8, $0x3fa03fa03fa03fa0
DATA mxThr<>+80(SB)/8, $0x3fa03fa03fa03fa0
DATA mxThr<>+88(SB)/8, $0x3fa03fa03fa03fa0
DATA mxThr<>+96(SB)/8, $0x3fdf3fdf3fdf3fdf
DATA mxThr<>+104(SB)/8, $0x3fdf3fdf3fdf3fdf
DATA mxThr<>+112(SB)/8, $0x3fdf3fdf3fdf3fdf
DATA mxThr<>+120(SB)/8, $0x3fdf3fdf3fdf3fdf
DATA mxThr<>+128(SB)/8, $0x4020402040204020
DATA mxThr<>+136(SB)/8, $0x4020402040204020
DATA mxThr<>+144(SB)/8, $0x4020402040204020
DATA mxThr<>+152(SB)/8, $0x4020402040204020
DATA mxThr<>+160(SB)/8, $0x405f405f405f405f
DATA mxThr<>+168(SB)/8, $0x405f405f405f405f
DATA mxThr<>+176(SB)/8, $0x405f405f405f405f
DATA mxThr<>+184(SB)/8, $0x405f405f405f405f
DATA mxThr<>+192(SB)/8, $0x40a040a040a040a0
DATA mxThr<>+200(SB)/8, $0x40a040a040a040a0
DATA mxThr<>+208(SB)/8, $0x40a040a040a040a0
DATA mxThr<>+216(SB)/8, $0x40a040a040a040a0
GLOBL mxThr<>(SB), RODATA|NOPTR, $224
DATA mxMag<>+0(SB)/8, $0x7fff7fff7fff7fff
DATA mxMag<>+8(SB)/8, $0x7fff7fff7fff7fff
DATA mxMag<>+16(SB)/8, $0x7fff7fff7fff7fff
DATA mxMag<>+24(SB)/8, $0x7fff7fff7fff7fff
GLOBL mxMag<>(SB), RODATA|NOPTR, $32
DATA mxEight<>+0(SB)/8, $0x0008000800080008
DATA mxEight<>+8(SB)/8, $0x0008000800080008
DATA mxEight<>+16(SB)/8, $0x0008000800080008
DATA mxEight<>+24(SB)/8, $0x0008000800080008
GLOBL mxEight<>(SB), RODATA|NOPTR, $32
DATA mxByte<>+0(SB)/8, $0x000000ff000000ff
DATA mxByte<>+8(SB)/8, $0x000000ff000000ff
DATA mxByte<>+16(SB)/8, $0x000000ff000000ff
DATA mxByte<>+24(SB)/8, $0x000000ff000000ff
GLOBL mxByte<>(SB), RODATA|NOPTR, $32

// func mxfp4BlocksAVX2(src, out, scales *byte, n int) int
TEXT ·mxfp4BlocksAVX2(SB), NOSPLIT, $0-40
	MOVQ src+0(FP), SI
	MOVQ out+8(FP), DI
	MOVQ scales+16(FP), DX
	MOVQ n+24(FP), CX
	XORQ BX, BX
	VMOVDQU mxMag<>(SB), Y15
	VPCMPEQW Y14, Y14, Y14

loop:
	CMPQ BX, CX
	JGE  done
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y1
	VPAND   Y15, Y0, Y2
	VPAND   Y15, Y1, Y3

	// block absmax of the 32 magnitudes: max of the two halves, of the two
	// 128-bit lanes, then PHMINPOSUW on the complement.
	VPMAXUW      Y2, Y3, Y4
	VEXTRACTI128 $1, Y4, X5
	VPMAXUW      X4, X5, X4
	VPXOR        X14, X4, X4
	VPHMINPOSUW  X4, X4
	VMOVD        X4, AX
	NOTL         AX
	ANDL         $0xffff, AX
	SHRL         $7, AX
	CMPL         AX, $5
	JLT          done // e < -124 (or zero block): Go path
	CMPL         AX, $0xfe
	JGT          done // NaN/Inf: Go path
	LEAL         -2(AX), R8
	MOVB         R8, (DX)
	SUBL         $129, AX
	SHLL         $7, AX
	VMOVD        AX, X6
	VPBROADCASTW X6, Y6
	VPADDW mxThr<>+0(SB), Y6, Y7
	VPADDW mxThr<>+32(SB), Y6, Y8
	VPADDW mxThr<>+64(SB), Y6, Y9
	VPADDW mxThr<>+96(SB), Y6, Y10
	VPADDW mxThr<>+128(SB), Y6, Y11
	VPADDW mxThr<>+160(SB), Y6, Y12
	VPADDW mxThr<>+192(SB), Y6, Y13

	// codes of elements 0..15 in Y4, 16..31 in Y2 (16-bit lanes)
	VPXOR Y4, Y4, Y4
	VPCMPGTW Y7, Y2, Y5
	VPSUBW   Y5, Y4, Y4
	VPCMPGTW Y8, Y2, Y5
	VPSUBW   Y5, Y4, Y4
	VPCMPGTW Y9, Y2, Y5
	VPSUBW   Y5, Y4, Y4
	VPCMPGTW Y10, Y2, Y5
	VPSUBW   Y5, Y4, Y4
	VPCMPGTW Y11, Y2, Y5
	VPSUBW   Y5, Y4, Y4
	VPCMPGTW Y12, Y2, Y5
	VPSUBW   Y5, Y4, Y4
	VPCMPGTW Y13, Y2, Y5
	VPSUBW   Y5, Y4, Y4
	VPSRLW $12, Y0, Y5
	VPAND  mxEight<>(SB), Y5, Y5
	VPOR   Y5, Y4, Y4
	VPXOR  Y2, Y2, Y2
	VPCMPGTW Y7, Y3, Y5
	VPSUBW   Y5, Y2, Y2
	VPCMPGTW Y8, Y3, Y5
	VPSUBW   Y5, Y2, Y2
	VPCMPGTW Y9, Y3, Y5
	VPSUBW   Y5, Y2, Y2
	VPCMPGTW Y10, Y3, Y5
	VPSUBW   Y5, Y2, Y2
	VPCMPGTW Y11, Y3, Y5
	VPSUBW   Y5, Y2, Y2
	VPCMPGTW Y12, Y3, Y5
	VPSUBW   Y5, Y2, Y2
	VPCMPGTW Y13, Y3, Y5
	VPSUBW   Y5, Y2, Y2
	VPSRLW $12, Y1, Y5
	VPAND  mxEight<>(SB), Y5, Y5
	VPOR   Y5, Y2, Y2

	// pairs of 16-bit codes to bytes (low nibble first), then 16 bytes
	VPSRLD    $12, Y4, Y5
	VPOR      Y5, Y4, Y4
	VPAND     mxByte<>(SB), Y4, Y4
	VPSRLD    $12, Y2, Y5
	VPOR      Y5, Y2, Y2
	VPAND     mxByte<>(SB), Y2, Y2
	VPACKUSDW Y2, Y4, Y4
	VPERMQ    $0xD8, Y4, Y4
	VPACKUSWB Y4, Y4, Y4
	VPERMQ    $0x08, Y4, Y4
	VMOVDQU   X4, (DI)

	ADDQ $64, SI
	ADDQ $16, DI
	INCQ DX
	INCQ BX
	JMP  loop

done:
	VZEROUPPER
	MOVQ BX, ret+32(FP)
	RET
