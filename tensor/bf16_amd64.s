//go:build amd64 && !purego

#include "textflag.h"

// func bf16WidenSSE2(d *uint32, s *uint16, n int)
// Widens n bfloat16 values (n a multiple of 8) to float32 bit patterns by
// interleaving each 16-bit word with a zero word below it (SSE2 baseline).
TEXT ·bf16WidenSSE2(SB), NOSPLIT, $0-24
	MOVQ d+0(FP), DI
	MOVQ s+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JZ   done

loop:
	MOVOU     (SI), X1
	PXOR      X2, X2
	PXOR      X3, X3
	PUNPCKLWL X1, X2
	PUNPCKHWL X1, X3
	MOVOU     X2, (DI)
	MOVOU     X3, 16(DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       loop

done:
	RET
