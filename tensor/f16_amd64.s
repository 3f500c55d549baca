//go:build amd64 && !purego

#include "textflag.h"

// func f16ToF32F16C(d *float32, s *uint16, n int)
// Converts n IEEE halves (n a multiple of 8) with VCVTPH2PS (F16C + AVX).
TEXT ·f16ToF32F16C(SB), NOSPLIT, $0-24
	MOVQ d+0(FP), DI
	MOVQ s+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JZ   done

loop:
	VCVTPH2PS (SI), Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       loop
	VZEROUPPER

done:
	RET
