package kernels

import "fmt"

// checkMat verifies that s can hold a rows×cols row-major matrix with
// leading dimension ld.
func checkMat(what string, s []float32, rows, cols, ld int) error {
	if rows < 0 || cols < 0 {
		return fmt.Errorf("%s: negative dimensions %dx%d: %w", what, rows, cols, ErrShape)
	}
	if ld < max(1, cols) {
		return fmt.Errorf("%s: leading dimension %d < %d columns: %w", what, ld, cols, ErrShape)
	}
	if rows == 0 || cols == 0 {
		return nil
	}
	need := (rows-1)*ld + cols
	if need/ld < rows-1 { // overflow guard
		return fmt.Errorf("%s: %dx%d (ld %d) overflows: %w", what, rows, cols, ld, ErrShape)
	}
	if len(s) < need {
		return fmt.Errorf("%s: %dx%d matrix with ld %d needs %d elements, have %d: %w", what, rows, cols, ld, need, len(s), ErrShape)
	}
	return nil
}

// checkLen verifies that s holds at least n elements.
func checkLen(what string, s []float32, n int) error {
	if n < 0 {
		return fmt.Errorf("%s: negative length %d: %w", what, n, ErrShape)
	}
	if len(s) < n {
		return fmt.Errorf("%s: need %d elements, have %d: %w", what, n, len(s), ErrShape)
	}
	return nil
}

// mulOK returns a*b and whether it did not overflow (a, b >= 0).
func mulOK(a, b int) (int, bool) {
	if a == 0 || b == 0 {
		return 0, true
	}
	p := a * b
	if p/b != a || p < 0 {
		return 0, false
	}
	return p, true
}
