//go:build amd64

#include "textflag.h"

// E2M1 encoding of w/mul with AVX2 (see e2m1DivAVX2 in mxfp4_amd64.go):
// IEEE division (VDIVPS rounds like the scalar division of the reference
// definitions), then the magnitude code counts the E2M1 thresholds below
// |v|: > 0.25, >= 0.75, > 1.25, >= 1.75, > 2.5, >= 3.5, > 5 (ties to the
// even code; saturation at 6 is the count of 7), and bit 3 takes v's sign.
DATA e2Thr<>+0(SB)/8, $0x3e8000003e800000
DATA e2Thr<>+8(SB)/8, $0x3e8000003e800000
DATA e2Thr<>+16(SB)/8, $0x3e8000003e800000
DATA e2Thr<>+24(SB)/8, $0x3e8000003e800000
DATA e2Thr<>+32(SB)/8, $0x3f4000003f400000
DATA e2Thr<>+40(SB)/8, $0x3f4000003f400000
DATA e2Thr<>+48(SB)/8, $0x3f4000003f400000
DATA e2Thr<>+56(SB)/8, $0x3f4000003f400000
DATA e2Thr<>+64(SB)/8, $0x3fa000003fa00000
DATA e2Thr<>+72(SB)/8, $0x3fa000003fa00000
DATA e2Thr<>+80(SB)/8, $0x3fa000003fa00000
DATA e2Thr<>+88(SB)/8, $0x3fa000003fa00000
DATA e2Thr<>+96(SB)/8, $0x3fe000003fe00000
DATA e2Thr<>+104(SB)/8, $0x3fe000003fe00000
DATA e2Thr<>+112(SB)/8, $0x3fe000003fe00000
DATA e2Thr<>+120(SB)/8, $0x3fe000003fe00000
DATA e2Thr<>+128(SB)/8, $0x4020000040200000
DATA e2Thr<>+136(SB)/8, $0x4020000040200000
DATA e2Thr<>+144(SB)/8, $0x4020000040200000
DATA e2Thr<>+152(SB)/8, $0x4020000040200000
DATA e2Thr<>+160(SB)/8, $0x4060000040600000
DATA e2Thr<>+168(SB)/8, $0x4060000040600000
DATA e2Thr<>+176(SB)/8, $0x4060000040600000
DATA e2Thr<>+184(SB)/8, $0x4060000040600000
DATA e2Thr<>+192(SB)/8, $0x40a0000040a00000
DATA e2Thr<>+200(SB)/8, $0x40a0000040a00000
DATA e2Thr<>+208(SB)/8, $0x40a0000040a00000
DATA e2Thr<>+216(SB)/8, $0x40a0000040a00000
GLOBL e2Thr<>(SB), RODATA|NOPTR, $224
DATA e2Abs<>+0(SB)/8, $0x7fffffff7fffffff
DATA e2Abs<>+8(SB)/8, $0x7fffffff7fffffff
DATA e2Abs<>+16(SB)/8, $0x7fffffff7fffffff
DATA e2Abs<>+24(SB)/8, $0x7fffffff7fffffff
GLOBL e2Abs<>(SB), RODATA|NOPTR, $32
DATA e2Eight<>+0(SB)/8, $0x0000000800000008
DATA e2Eight<>+8(SB)/8, $0x0000000800000008
DATA e2Eight<>+16(SB)/8, $0x0000000800000008
DATA e2Eight<>+24(SB)/8, $0x0000000800000008
GLOBL e2Eight<>(SB), RODATA|NOPTR, $32
DATA e2Word<>+0(SB)/8, $0x00ff00ff00ff00ff
DATA e2Word<>+8(SB)/8, $0x00ff00ff00ff00ff
DATA e2Word<>+16(SB)/8, $0x00ff00ff00ff00ff
DATA e2Word<>+24(SB)/8, $0x00ff00ff00ff00ff
GLOBL e2Word<>(SB), RODATA|NOPTR, $32

// func e2m1DivAVX2(w *float32, out *byte, n int, mul float32)
TEXT ·e2m1DivAVX2(SB), NOSPLIT, $0-28
	MOVQ         w+0(FP), SI
	MOVQ         out+8(FP), DI
	MOVQ         n+16(FP), CX
	VBROADCASTSS mul+24(FP), Y6
	VMOVDQU      e2Abs<>(SB), Y15
	VMOVDQU      e2Thr<>+0(SB), Y7
	VMOVDQU      e2Thr<>+32(SB), Y8
	VMOVDQU      e2Thr<>+64(SB), Y9
	VMOVDQU      e2Thr<>+96(SB), Y10
	VMOVDQU      e2Thr<>+128(SB), Y11
	VMOVDQU      e2Thr<>+160(SB), Y12
	VMOVDQU      e2Thr<>+192(SB), Y13

loop:
	CMPQ CX, $16
	JLT  done
	VMOVUPS (SI), Y0
	VDIVPS  Y6, Y0, Y1
	VANDPS  Y15, Y1, Y2
	VPXOR   Y4, Y4, Y4
	VCMPPS  $0x1e, Y7, Y2, Y3
	VPSUBD  Y3, Y4, Y4
	VCMPPS  $0x1d, Y8, Y2, Y3
	VPSUBD  Y3, Y4, Y4
	VCMPPS  $0x1e, Y9, Y2, Y3
	VPSUBD  Y3, Y4, Y4
	VCMPPS  $0x1d, Y10, Y2, Y3
	VPSUBD  Y3, Y4, Y4
	VCMPPS  $0x1e, Y11, Y2, Y3
	VPSUBD  Y3, Y4, Y4
	VCMPPS  $0x1d, Y12, Y2, Y3
	VPSUBD  Y3, Y4, Y4
	VCMPPS  $0x1e, Y13, Y2, Y3
	VPSUBD  Y3, Y4, Y4
	VPSRLD  $28, Y1, Y3
	VPAND   e2Eight<>(SB), Y3, Y3
	VPOR    Y3, Y4, Y4
	VMOVUPS 32(SI), Y0
	VDIVPS  Y6, Y0, Y1
	VANDPS  Y15, Y1, Y2
	VPXOR   Y5, Y5, Y5
	VCMPPS  $0x1e, Y7, Y2, Y3
	VPSUBD  Y3, Y5, Y5
	VCMPPS  $0x1d, Y8, Y2, Y3
	VPSUBD  Y3, Y5, Y5
	VCMPPS  $0x1e, Y9, Y2, Y3
	VPSUBD  Y3, Y5, Y5
	VCMPPS  $0x1d, Y10, Y2, Y3
	VPSUBD  Y3, Y5, Y5
	VCMPPS  $0x1e, Y11, Y2, Y3
	VPSUBD  Y3, Y5, Y5
	VCMPPS  $0x1d, Y12, Y2, Y3
	VPSUBD  Y3, Y5, Y5
	VCMPPS  $0x1e, Y13, Y2, Y3
	VPSUBD  Y3, Y5, Y5
	VPSRLD  $28, Y1, Y3
	VPAND   e2Eight<>(SB), Y3, Y3
	VPOR    Y3, Y5, Y5

	// 16 codes (32-bit lanes of Y4, Y5) to 16 bytes, then nibble pairs
	VPACKUSDW    Y5, Y4, Y4
	VPERMQ       $0xD8, Y4, Y4
	VEXTRACTI128 $1, Y4, X5
	VPACKUSWB    X5, X4, X4
	VPSRLW       $4, X4, X5
	VPOR         X5, X4, X4
	VPAND        e2Word<>(SB), X4, X4
	VPACKUSWB    X4, X4, X4
	VMOVQ        X4, (DI)

	ADDQ $64, SI
	ADDQ $8, DI
	SUBQ $16, CX
	JMP  loop

done:
	VZEROUPPER
	RET
