// Command ggufmix prints the quantize-stage and pack-stage rules that
// reproduce the per-tensor type mixture of a GGUF file (e.g. one written by
// llama-quantize), so that marlin can write the same mixture with GPTQ on
// the GGML grids: scripts/gguf-table.sh uses it.
//
//	go run ./scripts/ggufmix model.gguf
//
// Output: YAML lines "quant: {match: ..., format: ...}" and "pack: {match:
// ..., type: ...}" (one per rule).
package main

import (
	"fmt"
	"os"

	"github.com/marlin-llm/marlin/export/llamacpp"
	"github.com/marlin-llm/marlin/model/gguf"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: ggufmix file.gguf")
		os.Exit(2)
	}
	f, err := gguf.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "ggufmix:", err)
		os.Exit(1)
	}
	defer f.Close()
	rules, err := llamacpp.MixFromTensors(f.Tensors)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ggufmix:", err)
		os.Exit(1)
	}
	for _, r := range rules {
		if r.Pack {
			fmt.Printf("pack: {match: %q, type: %s}\n", r.Match, r.Type)
		} else {
			fmt.Printf("quant: {match: %q, format: %s}\n", r.Match, r.Format)
		}
	}
}
