package shaders

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestHeadersReachTheGPU checks that what the Linux tests compile is what
// the GPU compiles: every shared header in this directory is part of the
// assembled library source, verbatim, and nothing is left to include.
func TestHeadersReachTheGPU(t *testing.T) {
	src, err := LibrarySource()
	if err != nil {
		t.Fatal(err)
	}
	headers, err := filepath.Glob("mq_*.h")
	if err != nil || len(headers) < 5 {
		t.Fatalf("headers %v, %v", headers, err)
	}
	for _, h := range headers {
		data, err := os.ReadFile(h)
		if err != nil {
			t.Fatal(err)
		}
		body := removeIncludes(string(data))
		if !strings.Contains(src, body) {
			t.Errorf("%s is not in the library source verbatim", h)
		}
		if c := strings.Count(src, "// ---- begin "+h+"\n"); c != 1 {
			t.Errorf("%s inlined %d times", h, c)
		}
	}
	if regexp.MustCompile(`(?m)^\s*#\s*include\s+"`).MatchString(src) {
		t.Error("library source still has a quoted #include")
	}
	// The emulator compiles the same headers.
	emu, err := os.ReadFile("emu_kernels.h")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"mq_gemm.h", "mq_fwht.h", "mq_moe.h"} {
		if !strings.Contains(string(emu), `#include "`+h+`"`) {
			t.Errorf("emu_kernels.h does not include %s", h)
		}
	}
}

func removeIncludes(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !includeRE.MatchString(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

var (
	kernelRE = regexp.MustCompile(`(?s)kernel\s+void\s+(\w+)\s*\((.*?)\)\s*\{(.*?)\n\}`)
	bufferRE = regexp.MustCompile(`(\w+)\s*\[\[buffer\((\d+)\)\]\]`)
	bodyRE   = regexp.MustCompile(`(mq_\w+_body)\(`)
)

// TestBindingsMatchMetal parses the kernel signatures of marlin.metal: their
// [[buffer(i)]] arguments must be Bindings in order, and the emulator's
// entry for each kernel must call the same body function.
func TestBindingsMatchMetal(t *testing.T) {
	metal, err := os.ReadFile(MainFile)
	if err != nil {
		t.Fatal(err)
	}
	emu, err := os.ReadFile("emu_kernels.c")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range kernelRE.FindAllStringSubmatch(string(metal), -1) {
		name, params, body := m[1], m[2], m[3]
		seen[name] = true
		want, ok := Bindings[name]
		if !ok {
			t.Errorf("kernel %s has no Bindings entry", name)
			continue
		}
		var got []string
		for i, b := range bufferRE.FindAllStringSubmatch(params, -1) {
			if b[2] != strconv.Itoa(i) {
				t.Errorf("%s: argument %s at buffer(%s), want buffer(%d)", name, b[1], b[2], i)
			}
			got = append(got, b[1])
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: buffers %v, Bindings %v", name, got, want)
		}
		bm := bodyRE.FindStringSubmatch(body)
		if bm == nil {
			t.Errorf("%s calls no mq_*_body", name)
			continue
		}
		if !strings.Contains(string(emu), bm[1]+"(") {
			t.Errorf("%s: the emulator never calls %s", name, bm[1])
		}
	}
	var missing []string
	for k := range Bindings {
		if !seen[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("Bindings name kernels absent from %s: %v", MainFile, missing)
	}
	// Every launch plan names a kernel that exists.
	p := QParams{Rows: 3, Cols: 5, M: 2}
	fw, _ := PlanFWHT(FWHTParams{Total: 64, Log2B: 6})
	fs, _ := PlanFWHT(FWHTParams{Total: 64, Log2B: 2})
	rt, _ := PlanRouter(RouterParams{Tokens: 1, Experts: 4, K: 2})
	for _, l := range []Launch{PlanDequant(p), PlanGEMM(p), PlanGEMV(p), PlanMoEGEMM(p, 3), fw, fs, rt} {
		if !seen[l.Kernel] {
			t.Errorf("plan names kernel %q, absent from %s", l.Kernel, MainFile)
		}
	}
}

func TestNewQParamsRejects(t *testing.T) {
	bad := []WeightDesc{
		{Elem: ElemE2M1, Bits: 3, ScaleType: ScaleF16, Rows: 1, Cols: 1},
		{Elem: 9, Bits: 4, ScaleType: ScaleF16, Rows: 1, Cols: 1},
		{Elem: ElemInt, Bits: 4, ScaleType: 0, Rows: 1, Cols: 1},
		{Elem: ElemInt, Bits: 4, ScaleType: ScaleF16, Rows: 0, Cols: 1},
		{Elem: ElemInt, Bits: 4, ScaleType: ScaleF16, Rows: 1, Cols: -3},
		{Elem: ElemE4M3, Bits: 8, ScaleType: ScaleF32, Asym: true, Rows: 1, Cols: 1},
		{Elem: ElemInt, Bits: 4, ScaleType: ScaleF16, Rows: 1 << 25, Cols: 1},
	}
	for i, d := range bad {
		if _, err := NewQParams(d); err == nil {
			t.Errorf("case %d %+v: no error", i, d)
		}
	}
	p, err := NewQParams(WeightDesc{Elem: ElemInt, Bits: 3, ScaleType: ScaleF16, Rows: 2, Cols: 37, GroupSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	if p.NGroups != 3 || p.RowBytes != 14 || p.Group != 16 {
		t.Fatalf("int3 2x37 g16: %+v", p)
	}
	w := Weights{Codes: make([]byte, 28), Scales: make([]byte, 12)}
	if err := w.Check(p, 1); err != nil {
		t.Fatal(err)
	}
	if err := (Weights{Codes: make([]byte, 27), Scales: make([]byte, 12)}).Check(p, 1); err == nil {
		t.Fatal("short codes: no error")
	}
	p.HasGIdx = 1
	w.GIdx = make([]int32, 37)
	w.GIdx[5] = 3
	if err := w.Check(p, 1); err == nil {
		t.Fatal("g_idx out of range: no error")
	}
}
