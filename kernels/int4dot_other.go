//go:build !amd64 || purego

package kernels

func int4DotSIMD(x []float32, codes []byte, ngroups, gs int, xsv, muls, offs []float32) float32 {
	return int4DotGo(x, codes, ngroups, gs, xsv, muls, offs)
}
