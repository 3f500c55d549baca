package quant

import (
	"strings"
	"testing"
)

func TestLookupMethod(t *testing.T) {
	for _, m := range Methods() {
		got, err := LookupMethod(m.Name)
		if err != nil || got != m {
			t.Errorf("LookupMethod(%q) = %+v, %v", m.Name, got, err)
		}
		if got, err := LookupMethod(m.Name); err != nil || got.NeedsHessian != (m.Name != MethodRTN) {
			t.Errorf("%s: NeedsHessian = %v; only rtn works without calibration", m.Name, got.NeedsHessian)
		}
	}
	_, err := LookupMethod("awq")
	if err == nil || !strings.Contains(err.Error(), `"awq"`) || !strings.Contains(err.Error(), strings.Join(MethodNames(), ", ")) {
		t.Errorf("LookupMethod(awq) error %v: want the name and the known methods", err)
	}
	if _, err := LookupMethod("GPTQ"); err == nil {
		t.Error("LookupMethod is case-sensitive (job files spell methods in lower case)")
	}
}
