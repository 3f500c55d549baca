package quant

import (
	"context"
	"encoding/binary"
	"syscall"
	"testing"

	"github.com/marlin-llm/marlin/tensor"
)

// BenchmarkQuantizeBF16 measures quantize+pack throughput in bytes of BF16
// input (b.SetBytes), single core and all cores, for every format:
//
//	go test ./quant -run '^$' -bench QuantizeBF16 -benchtime 3x
func BenchmarkQuantizeBF16(b *testing.B) {
	const rows, cols = 1024, 4096
	w := randWeights(rows*cols, 5)
	data := make([]byte, 2*len(w))
	for i, v := range w {
		binary.LittleEndian.PutUint16(data[2*i:], EncodeBF16(v))
	}
	t := &tensor.Tensor{Name: "bench", DType: tensor.BF16, Shape: []int{rows, cols}, Data: data}
	for _, name := range []string{"mxfp4", "nvfp4", "fp4", "int4", "int4_asym", "int3", "int2", "nf4", "nf3", "fp8_e4m3", "fp8_e5m2", "bf16"} {
		f, _ := Lookup(name)
		for _, mode := range []struct {
			name    string
			workers int
		}{{"1core", 1}, {"allcores", -1}} {
			b.Run(name+"/"+mode.name, func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				cpu0 := cpuSeconds()
				for i := 0; i < b.N; i++ {
					if _, err := QuantizeTensor(context.Background(), t, f, &Options{Workers: mode.workers}); err != nil {
						b.Fatal(err)
					}
				}
				// Throughput per CPU-second: meaningful on a loaded machine
				// where wall-clock MB/s is not.
				if cpu := cpuSeconds() - cpu0; cpu > 0 {
					b.ReportMetric(float64(len(data))*float64(b.N)/cpu/1e9, "GB/cpu-s")
				}
			})
		}
	}
}

// cpuSeconds is the process's user+system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
