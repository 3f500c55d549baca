// Package conformance holds no code: its tests loop over the architecture
// registry (hfconfig.Families), in the manner of gonum's testblas, and check
// that every family keeps what the registry promises: a forward pass in
// model/arch or an explicit "export only" mark, a llama.cpp mapping for
// every tensor of its checkpoints, tensor names the one parser
// (model/tensorname) understands, a forward pass on its nano checkpoint
// and a synthetic checkpoint from model/synth when it names a preset.
package conformance
