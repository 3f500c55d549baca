// Command gen rewrites the generated sections of README.md (the job file
// reference and the formats table; see package readme). Run from the
// repository root: go run ./internal/readme/gen (or `make docs`).
package main

import (
	"log"
	"os"

	"github.com/marlin-llm/marlin/internal/readme"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/stages"
)

func main() {
	const path = "README.md"
	reg, err := stages.NewRegistry()
	if err != nil {
		log.Fatal(err)
	}
	secs, err := readme.Sections(reg)
	if err != nil {
		log.Fatal(err)
	}
	doc, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	out, err := readme.Update(doc, secs)
	if err != nil {
		log.Fatal(err)
	}
	if err := pipeline.WriteFileAtomic(path, out); err != nil {
		log.Fatal(err)
	}
}
