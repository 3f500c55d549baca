package tensor

import (
	"strings"
	"testing"
)

func TestValidateShapes(t *testing.T) {
	for _, c := range []struct {
		shape []int
		bytes int
		want  string // "" for valid
	}{
		{[]int{2, 3}, 24, ""},
		{[]int{}, 4, ""},
		{[]int{0, 5}, 0, ""},
		{[]int{2, 3}, 20, "needs 24 bytes"},
		{[]int{-1, 2}, 0, "negative dimension"},
		// The product wraps int64 to 0: must not pass as an empty tensor.
		{[]int{1 << 32, 1 << 32}, 0, "too large"},
		{[]int{1 << 20, 1 << 20, 1 << 20}, 0, "too large"},
	} {
		tt := &Tensor{Name: "x", DType: F32, Shape: c.shape, Data: make([]byte, c.bytes)}
		err := tt.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("Validate(%v, %d bytes) = %v, want ok", c.shape, c.bytes, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("Validate(%v, %d bytes) = %v, want error containing %q", c.shape, c.bytes, err, c.want)
		}
	}
	if _, err := FromFloat32("x", F32, []int{1 << 32, 1 << 32}, nil); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Errorf("FromFloat32 of a wrapping shape = %v, want too large", err)
	}
}
