// Package stages holds marlin's stage kinds and Register, which puts all of
// them into a pipeline.Registry. Each kind lives in its own file (or
// sub-package) and exposes a func returning its pipeline.Kind; adding a
// kind means adding one line to the list below.
package stages

import (
	"fmt"

	"github.com/marlin-llm/marlin/pipeline"
)

// Register registers every stage kind in reg.
func Register(reg *pipeline.Registry) error {
	for _, k := range []pipeline.Kind{
		SyntheticKind(),
		StatsKind(),
		QuantizeKind(),
		LoadKind(),
		RotateKind(),
		CalibrateKind(),
		PackKind(),
		ValidateKind(),
		BenchmarkKind(),
	} {
		if err := reg.Register(k); err != nil {
			return fmt.Errorf("stages: %w", err)
		}
	}
	return nil
}

// NewRegistry returns a registry with every stage kind registered.
func NewRegistry() (*pipeline.Registry, error) {
	reg := pipeline.NewRegistry()
	if err := Register(reg); err != nil {
		return nil, err
	}
	return reg, nil
}
