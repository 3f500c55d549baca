package quant

import "testing"

// BenchmarkMXRowF32 and BenchmarkMXRowBF16 isolate the MXFP4 row kernels
// (64 rows of 4096 Gaussian weights), reporting GB of BF16 input.
func BenchmarkMXRowF32(b *testing.B) {
	const cols = 4096
	w := randWeights(cols*64, 5)
	out := make([]byte, cols/2)
	sc := make([]byte, cols/32)
	b.SetBytes(int64(2 * len(w)))
	c0 := cpuSeconds()
	for i := 0; i < b.N; i++ {
		for r := 0; r < 64; r++ {
			mxfp4Row(w[r*cols:(r+1)*cols], out, sc)
		}
	}
	b.ReportMetric(float64(2*len(w))*float64(b.N)/(cpuSeconds()-c0)/1e9, "GB/cpu-s")
}

func BenchmarkMXRowBF16(b *testing.B) {
	const cols = 4096
	w := randWeights(cols*64, 5)
	src := make([]byte, 2*len(w))
	for i, v := range w {
		h := EncodeBF16(v)
		src[2*i], src[2*i+1] = byte(h), byte(h>>8)
	}
	out := make([]byte, cols/2)
	sc := make([]byte, cols/32)
	b.SetBytes(int64(len(src)))
	c0 := cpuSeconds()
	for i := 0; i < b.N; i++ {
		for r := 0; r < 64; r++ {
			mxfp4RowBF16(src[2*r*cols:2*(r+1)*cols], out, sc)
		}
	}
	b.ReportMetric(float64(len(src))*float64(b.N)/(cpuSeconds()-c0)/1e9, "GB/cpu-s")
}
