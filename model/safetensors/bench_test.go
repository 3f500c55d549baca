package safetensors

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/tensor"
)

// benchFile returns a BF16 checkpoint to benchmark: $MARLIN_BENCH_FILE, or
// a generated 256 MiB file of 64 tensors of 2 MiElements each.
func benchFile(b *testing.B) string {
	if p := os.Getenv("MARLIN_BENCH_FILE"); p != "" {
		return p
	}
	p := filepath.Join(b.TempDir(), "bench.safetensors")
	var infos []TensorInfo
	for i := range 64 {
		infos = append(infos, TensorInfo{Name: "t" + string(rune('A'+i/26)) + string(rune('a'+i%26)), DType: tensor.BF16, Shape: []int{1024, 2048}})
	}
	w, err := Create(p, nil, infos)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1024*2048*2)
	for i := range buf {
		buf[i] = byte(i * 131)
	}
	for _, ti := range infos {
		if err := w.WriteTensor(ti.Name, buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkLoadBF16ToF32 opens a checkpoint (mmap), converts every BF16
// tensor to float32 and closes it, and in the same run times
// `cat file > /dev/null` on the same (page-cached) file. It reports both
// throughputs in GB/s of file bytes and their ratio (goal >= 0.8).
func BenchmarkLoadBF16ToF32(b *testing.B) {
	p := benchFile(b)
	st, err := os.Stat(p)
	if err != nil {
		b.Fatal(err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	cat := func() time.Duration {
		cmd := exec.Command("cat", p)
		cmd.Stdout = devnull
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	var dst []float32
	load := func() time.Duration {
		t0 := time.Now()
		ck, err := Open(p)
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range ck.Names() {
			t, err := ck.Tensor(n)
			if err != nil {
				b.Fatal(err)
			}
			if t.DType != tensor.BF16 {
				continue
			}
			if cap(dst) < t.NumElements() {
				dst = make([]float32, t.NumElements())
			}
			if err := tensor.DecodeFloat32(dst[:t.NumElements()], tensor.BF16, t.Data); err != nil {
				b.Fatal(err)
			}
		}
		ck.Close()
		return time.Since(t0)
	}
	cat() // warm the page cache
	load()
	var tCat, tLoad time.Duration
	b.SetBytes(st.Size())
	b.ResetTimer()
	for b.Loop() {
		tLoad += load()
		b.StopTimer()
		tCat += cat()
		b.StartTimer()
	}
	gb := float64(st.Size()) * float64(b.N) / 1e9
	b.ReportMetric(gb/tLoad.Seconds(), "load_GB/s")
	b.ReportMetric(gb/tCat.Seconds(), "cat_GB/s")
	b.ReportMetric(tCat.Seconds()/tLoad.Seconds(), "ratio")
}
