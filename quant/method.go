package quant

import (
	"fmt"
	"slices"
	"strings"
)

// Quantization methods: the values of a job's `method:` and of MetaMethod.
// Methods lists them with what the schema, the validation messages and the
// planners need to know; the implementations are quant.QuantizeTensor
// (rtn), quant/gptq (gptq, mr-gptq) and quant/calib.Method, which runs any
// of them on a layer's projection.
const (
	MethodRTN    = "rtn"
	MethodGPTQ   = "gptq"
	MethodMRGPTQ = "mr-gptq"
)

// MethodInfo describes one quantization method.
type MethodInfo struct {
	// Name is the method's name in job files and Meta.
	Name string
	// Doc is a short note shown after the name in the job-file schema
	// ("" for none).
	Doc string
	// NeedsHessian is true for methods that need calibration activations
	// (a Hessian per Linear weight).
	NeedsHessian bool
}

// methods is the registry, in the order the schema and messages list them.
var methods = [...]MethodInfo{
	{Name: MethodRTN, Doc: "round to nearest; default"},
	{Name: MethodGPTQ, NeedsHessian: true},
	{Name: MethodMRGPTQ, Doc: "gptq with act-order and scale search on Hadamard-rotated input", NeedsHessian: true},
}

// Methods returns every quantization method, in registry order.
func Methods() []MethodInfo { return slices.Clone(methods[:]) }

// MethodNames returns the names of Methods.
func MethodNames() []string {
	names := make([]string, len(methods))
	for i, m := range methods {
		names[i] = m.Name
	}
	return names
}

// LookupMethod returns the method called name (exact match). The error
// lists the known methods.
func LookupMethod(name string) (MethodInfo, error) {
	for _, m := range methods {
		if m.Name == name {
			return m, nil
		}
	}
	return MethodInfo{}, fmt.Errorf("unknown method %q (known: %s)", name, strings.Join(MethodNames(), ", "))
}
