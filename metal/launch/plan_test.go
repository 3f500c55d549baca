package launch

import "testing"

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
