package quant

import (
	"math"
	"testing"
)

func TestNormalMapReproducesTables(t *testing.T) {
	nf4 := NormalMap(4, 0.9677083)
	for i, v := range nf4 {
		if math.Abs(v-float64(NF4Values[i])) > 2e-7 {
			t.Errorf("NF4[%d]: construction %.9g, table %.9g", i, v, NF4Values[i])
		}
	}
	nf3 := NormalMap(3, 0.9677083)
	for i, v := range nf3 {
		if float32(v) != NF3Values[i] {
			t.Errorf("NF3[%d]: construction %.9g (float32 %v), table %.9g", i, v, float32(v), NF3Values[i])
		}
	}
}
