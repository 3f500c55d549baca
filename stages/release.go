package stages

import (
	"github.com/marlin-llm/marlin/model/arch"
)

// releaseLayer gives back the mapped pages of decoder layer l's weights in
// each model (layer-by-layer evaluation reads every layer once), so that
// evaluating a model larger than memory keeps about one layer resident.
func releaseLayer(l int, models ...*arch.Model) {
	for _, m := range models {
		for _, p := range m.LayerProjs(l) {
			releaseLinear(p.Linear())
		}
	}
}

func releaseLinear(lin arch.Linear) {
	switch v := lin.(type) {
	case *arch.Lazy:
		pageOut(v.Tensor().Data)
	case *arch.Quantized:
		pk := v.Matrix()
		pageOut(pk.Codes)
		pageOut(pk.Scales)
	case interface{ Base() arch.Linear }:
		releaseLinear(v.Base())
	}
}
