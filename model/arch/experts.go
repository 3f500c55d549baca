package arch

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/marlin-llm/marlin/kernels"
)

// expertsInFlight bounds the bytes of expert buffers (inputs, activations,
// outputs) that a parallel MoE pass holds at once: experts computed ahead
// of the one being reported wait in memory.
const expertsInFlight = 1 << 30

// heavyExpertRows is the token count from which an expert's products run
// multi-threaded in a parallel MoE pass: enough rows for the threaded GEMM
// to split well, and enough work that waiting for one core would stall the
// pass.
const heavyExpertRows = 2048

// expertWork is what runExperts needs to know about one MoE pass over the
// experts: each expert's input rows, and what to do with its outputs.
type expertWork struct {
	// input returns expert e's input rows (rows×hidden floats; x itself
	// or a gathered copy). rows == 0 skips the expert.
	input func(rc *run, e int) (x []float32, rows int)
	// avgRows is the average rows input returns for an expert with rows,
	// for the memory bound.
	avgRows int
	// noOutput skips the down projection's product: the pass only reports
	// the experts' inputs (all-experts calibration). Its input is still
	// computed and reported.
	noOutput bool
	// done receives expert e's rows×hidden outputs, in expert order.
	done func(e int, y []float32) error
}

// runExperts runs the experts of m on the rows w.input gives and hands
// their outputs to w.done in expert order, reporting each projection's
// input to rc.hooks (Linear, StopBefore) in the order the expert's own
// forward pass would. On a backend with a serial variant (the CPU) and
// more than one core, outside Decode, the experts run concurrently on
// single-threaded products: a routed expert sees a few hundred tokens, too
// few rows for one product to keep many cores busy. Hooks and done still
// run on the calling goroutine in expert order, so every result, every
// accumulated Hessian and the order the hooks see are those of the serial
// loop (the serial backend's products are bit-identical, see
// kernels.Serial).
func (m *MoE) runExperts(rc *run, w expertWork) error {
	E := len(m.experts)
	sb, ok := kernels.Serial(rc.b)
	workers := min(runtime.GOMAXPROCS(0), E)
	if !ok || rc.cache != nil || workers <= 1 {
		return m.runExpertsSerial(rc, w)
	}
	// Experts computed ahead of the one being reported wait in memory:
	// about expertsInFlight bytes of them at the average expert's size,
	// and never fewer than the workers.
	_, inter := m.experts[0].down.lin.Dims()
	perExpert := 4 * max(1, w.avgRows) * (2*rc.hidden + 2*inter)
	ahead := max(workers, min(workers+workers/2, expertsInFlight/perExpert))
	heavy := heavyExpertRows
	if m.heavyRows > 0 {
		heavy = m.heavyRows
	}

	type result struct {
		x, act, y []float32
		rows      int
		err       error
		ready     chan struct{}
	}
	res := make([]result, E)
	for e := range res {
		res[e].ready = make(chan struct{})
	}
	wc := *rc
	wc.b, wc.hooks = sb, nil
	slots := make(chan struct{}, ahead)
	quit := make(chan struct{})
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-quit:
					return
				default:
				}
				select {
				case slots <- struct{}{}:
				case <-quit:
					return
				}
				e := int(next.Add(1) - 1)
				if e >= E {
					return
				}
				r := &res[e]
				if r.err = wc.ctx.Err(); r.err == nil {
					r.x, r.rows = w.input(&wc, e)
					if r.rows >= heavy {
						// A heavy expert (routing is rarely even) would keep
						// one core busy while the others wait for it: its
						// products use all of them.
						hc := wc
						hc.b = rc.b
						r.act, r.y, r.err = m.experts[e].compute(&hc, r.x, r.rows, !w.noOutput)
					} else if r.rows > 0 {
						r.act, r.y, r.err = m.experts[e].compute(&wc, r.x, r.rows, !w.noOutput)
					}
				}
				close(r.ready)
			}
		}()
	}
	defer func() {
		close(quit)
		wg.Wait()
	}()
	for e := 0; e < E; e++ {
		r := &res[e]
		select {
		case <-r.ready:
		case <-rc.ctx.Done():
			return rc.ctx.Err()
		}
		if r.err != nil {
			return r.err
		}
		if r.rows > 0 {
			if err := m.experts[e].report(rc, r.x, r.act, r.rows); err != nil {
				return err
			}
			if !w.noOutput {
				if err := w.done(e, r.y); err != nil {
					return err
				}
			}
		}
		res[e] = result{}
		<-slots
	}
	return nil
}

// runExpertsSerial is runExperts one expert after another on rc's backend.
func (m *MoE) runExpertsSerial(rc *run, w expertWork) error {
	for e := range m.experts {
		if err := rc.ctx.Err(); err != nil {
			return err
		}
		x, rows := w.input(rc, e)
		if rows == 0 {
			continue
		}
		if w.noOutput {
			if err := m.experts[e].reportOnly(rc, x, rows); err != nil {
				return err
			}
			continue
		}
		y, err := m.experts[e].apply(rc, x, rows)
		if err != nil {
			return err
		}
		if err := w.done(e, y); err != nil {
			return err
		}
	}
	return nil
}

// compute runs the MLP on rows rows of x without reporting to hooks and
// returns the down projection's input (act) and, when withOutput, its
// rows×hidden output.
func (m *MLP) compute(rc *run, x []float32, rows int, withOutput bool) (act, y []float32, err error) {
	if rc.hooks != nil {
		c := *rc
		c.hooks = nil // report tells them
		rc = &c
	}
	if m.gate == nil {
		if act, err = rc.linear(m.up, x, rows); err != nil {
			return nil, nil, err
		}
		relu2(act)
	} else {
		if act, err = rc.linear(m.gate, x, rows); err != nil {
			return nil, nil, err
		}
		u, err := rc.linear(m.up, x, rows)
		if err != nil {
			return nil, nil, err
		}
		if err := rc.b.SiLUMul(act, act, u); err != nil {
			return nil, nil, fmt.Errorf("silu: %w", err)
		}
	}
	if !withOutput {
		return act, nil, nil
	}
	y, err = rc.linear(m.down, act, rows)
	return act, y, err
}

// reportOnly runs the MLP on rows rows of x as far as its down
// projection's input and reports each projection's input to rc's hooks;
// the down projection itself does not run.
func (m *MLP) reportOnly(rc *run, x []float32, rows int) error {
	act, _, err := m.compute(rc, x, rows, false)
	if err != nil {
		return err
	}
	return m.report(rc, x, act, rows)
}

// report tells rc's hooks what applyInto would have: each projection's
// input in order (gate and up see x, down sees act), stopping where
// StopBefore asks.
func (m *MLP) report(rc *run, x, act []float32, rows int) error {
	if rc.hooks == nil {
		return nil
	}
	if m.gate != nil {
		if err := rc.reportInput(m.gate, x, rows); err != nil {
			return err
		}
	}
	if err := rc.reportInput(m.up, x, rows); err != nil {
		return err
	}
	return rc.reportInput(m.down, act, rows)
}
