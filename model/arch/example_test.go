package arch_test

import (
	"context"
	"fmt"
	"log"
	"path/filepath"

	"github.com/marlin-llm/marlin/model/arch"
)

// Example_sequentialCalibration shows the layer-by-layer flow of sequential
// GPTQ: each layer is calibrated on the outputs of the already-quantized
// layers before it. The "quantizer" here just copies the weights.
func Example_sequentialCalibration() {
	dir := filepath.Join("..", "..", "demo", "qwen3-nano") // bundled with the repository
	m, err := arch.Load(dir, arch.Options{})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	ids := make([]int32, 64)
	for i := range ids {
		ids[i] = int32(100 + i)
	}
	batch := arch.Batch{Seqs: 1, Len: len(ids)}
	h, err := m.Embed(ids)
	if err != nil {
		log.Fatal(err)
	}
	var seen map[string]int
	hooks := &arch.Hooks{Linear: func(name string, x []float32, rows, cols int) {
		seen[name] += rows // a real stage accumulates H += 2·XᵀX per InputKey
	}}
	for l := 0; l < m.NumLayers(); l++ {
		seen = map[string]int{}
		in := append([]float32(nil), h...)
		// 1. Observe layer l's Linear inputs on the current hidden states.
		if err := m.Layer(ctx, l, in, batch, hooks); err != nil {
			log.Fatal(err)
		}
		// 2. Quantize its Linears and swap them in.
		for _, p := range m.LayerProjs(l) {
			w := p.Linear().(arch.Weighted)
			out, inF := w.Dims()
			q, err := arch.NewDense(out, inF, append([]float32(nil), w.Weight()...), nil)
			if err != nil {
				log.Fatal(err)
			}
			if err := p.Set(q); err != nil {
				log.Fatal(err)
			}
		}
		// 3. Re-run the quantized layer to feed layer l+1.
		if err := m.Layer(ctx, l, h, batch, nil); err != nil {
			log.Fatal(err)
		}
		if l == m.NumLayers()-1 {
			fmt.Printf("layers: %d, linears seen in the last: %d, rows each: %d\n", m.NumLayers(), len(seen), seen[fmt.Sprintf("model.layers.%d.mlp.down_proj", l)])
		}
	}
	if _, err := m.Head(ctx, h, batch, nil); err != nil {
		log.Fatal(err)
	}
	// Output: layers: 4, linears seen in the last: 7, rows each: 64
}
