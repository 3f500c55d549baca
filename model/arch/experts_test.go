package arch

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
)

// TestExpertsParallelMatchesSerial runs the MoE nano models with the
// experts one after another (GOMAXPROCS 1) and concurrently (GOMAXPROCS 4):
// the logits must be bit-identical and the hooks must see the same Linear
// inputs in the same order, with all-experts calibration and with a pass
// that StopBefore ends at an expert. Experts of 8 tokens and more count as
// heavy (multi-threaded products), so both kinds run.
func TestExpertsParallelMatchesSerial(t *testing.T) {
	for _, name := range []string{"qwen3moe-nano", "glm47-nano", "nemotronh-nano"} {
		t.Run(name, func(t *testing.T) {
			m := loadNano(t, name)
			moes := 0
			for _, l := range m.layers {
				for _, mx := range []mixer{l.attn, l.mlp} {
					if moe, ok := mx.(*MoE); ok {
						moe.heavyRows = 8
						moes++
					}
				}
			}
			if moes == 0 {
				t.Fatal("no MoE block")
			}
			g := loadGoldenOut(t, name)
			ids := g.ids[:96]
			batch := Batch{Seqs: 2, Len: 48}
			var stopAt string
			for _, p := range m.Projs() {
				if p.Expert() == 3 {
					stopAt = p.Name() // the first projection of expert 3 of the first MoE layer
					break
				}
			}
			if stopAt == "" {
				t.Fatal("no expert 3")
			}
			for _, mode := range []string{"routed", "all-experts", "stop"} {
				run := func(procs int) ([]string, []float32, error) {
					defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
					var trace []string
					hooks := &Hooks{
						Linear:     traceInputs(&trace),
						AllExperts: mode == "all-experts",
					}
					if mode == "stop" {
						hooks.StopBefore = func(n string) bool { return n == stopAt }
					}
					logits, err := m.Forward(context.Background(), ids, batch, hooks)
					return trace, logits, err
				}
				st, sl, serr := run(1)
				pt, pl, perr := run(4)
				if mode == "stop" {
					if !errors.Is(serr, ErrStopped) || !errors.Is(perr, ErrStopped) {
						t.Fatalf("%s: errors %v, %v; want ErrStopped", mode, serr, perr)
					}
				} else if serr != nil || perr != nil {
					t.Fatalf("%s: %v, %v", mode, serr, perr)
				}
				if !slices.Equal(st, pt) {
					t.Errorf("%s: hooks saw %d calls serially and %d in parallel, or other inputs", mode, len(st), len(pt))
					for i := range min(len(st), len(pt)) {
						if st[i] != pt[i] {
							t.Errorf("first difference at call %d: %s vs %s", i, st[i], pt[i])
							break
						}
					}
				}
				if len(st) == 0 {
					t.Errorf("%s: no hook calls", mode)
				}
				for i := range sl {
					if math.Float32bits(sl[i]) != math.Float32bits(pl[i]) {
						t.Errorf("%s: logit %d: %g serially, %g in parallel", mode, i, sl[i], pl[i])
						break
					}
				}
			}
		})
	}
}

// TestInputsOnlyReportsTheSameInputs runs every decoder layer of the nano
// models with and without Hooks.InputsOnly: the hooks must see the same
// Linear inputs in the same order (serial and parallel experts, routed and
// all-experts), while the pass runs fewer products wherever the layer ends
// in an MLP or MoE block.
func TestInputsOnlyReportsTheSameInputs(t *testing.T) {
	for _, name := range []string{"qwen3-nano", "qwen3moe-nano", "glm47-nano", "nemotronh-nano"} {
		t.Run(name, func(t *testing.T) {
			m := loadNano(t, name)
			batch := Batch{Seqs: 2, Len: 24}
			hidden := m.cfg.HiddenSize
			h0 := make([]float32, batch.Tokens()*hidden)
			for i := range h0 {
				h0[i] = float32(math.Sin(float64(i)*0.37)) * 0.5
			}
			for l := range m.layers {
				ly := m.DecoderLayer(l)
				_, endsInMLP := m.layers[l].mlp.(*MLP)
				_, endsInMoE := m.layers[l].mlp.(*MoE)
				for _, all := range []bool{false, true} {
					for _, procs := range []int{1, 4} {
						run := func(inputsOnly bool) ([]string, int64) {
							defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
							var trace []string
							hooks := &Hooks{
								Linear:     traceInputs(&trace),
								AllExperts: all,
								InputsOnly: inputsOnly,
								Flops:      new(atomic.Int64),
							}
							if err := ly.Forward(context.Background(), slices.Clone(h0), batch, hooks); err != nil {
								t.Fatalf("layer %d: %v", l, err)
							}
							return trace, hooks.Flops.Load()
						}
						full, fullFlops := run(false)
						only, onlyFlops := run(true)
						if len(full) == 0 || !slices.Equal(full, only) {
							t.Fatalf("layer %d (all experts %v, %d procs): %d hook calls, %d with InputsOnly, or other inputs", l, all, procs, len(full), len(only))
						}
						if (endsInMLP || endsInMoE) && onlyFlops >= fullFlops {
							t.Errorf("layer %d: %d flops with InputsOnly, %d without", l, onlyFlops, fullFlops)
						}
						if !endsInMLP && !endsInMoE && onlyFlops != fullFlops {
							t.Errorf("layer %d without an MLP: %d flops with InputsOnly, %d without", l, onlyFlops, fullFlops)
						}
					}
				}
			}
		})
	}
}

// traceInputs is a Hooks.Linear that appends each call's name, shape and a
// hash of its input to trace.
func traceInputs(trace *[]string) func(name string, x []float32, r, c int) {
	return func(name string, x []float32, r, c int) {
		h := fnv.New64a()
		for _, v := range x {
			b := math.Float32bits(v)
			h.Write([]byte{byte(b), byte(b >> 8), byte(b >> 16), byte(b >> 24)})
		}
		*trace = append(*trace, fmt.Sprintf("%s %dx%d %x", name, r, c, h.Sum64()))
	}
}
