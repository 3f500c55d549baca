package stages

import (
	"strings"

	"github.com/marlin-llm/marlin/export"
	"github.com/marlin-llm/marlin/export/ct"
	"github.com/marlin-llm/marlin/export/llamacpp"
	"github.com/marlin-llm/marlin/export/native"
)

// packFormat is one export format of the pack stage.
type packFormat struct {
	// Name is the format's value of pack's format field.
	Name string
	export.Exporter
}

// packFormats is the registry of export formats, in the order the schema
// lists them (a function, so that nothing global is mutable). The pack
// stage, its validation and its schema enum walk it; a format is its
// export package and one row here.
func packFormats() []packFormat {
	return []packFormat{
		{PackGGUF, llamacpp.Exporter{}},
		{PackNative, native.Exporter{}},
		{PackCT, ct.Exporter{}},
		{PackGPTQ, ct.Exporter{GPTQ: true}},
	}
}

// lookupPackFormat returns the exporter of a format name.
func lookupPackFormat(name string) (export.Exporter, bool) {
	for _, f := range packFormats() {
		if f.Name == name {
			return f.Exporter, true
		}
	}
	return nil, false
}

// packFormatNames lists the format names in registry order.
func packFormatNames() []string {
	var n []string
	for _, f := range packFormats() {
		n = append(n, f.Name)
	}
	return n
}

// packFormatsDoc lists the formats for the kind's doc: "gguf (llama.cpp),
// native (...) or gptq (...)".
func packFormatsDoc() string {
	var parts []string
	for _, f := range packFormats() {
		parts = append(parts, f.Name+" ("+f.Doc()+")")
	}
	if n := len(parts); n > 1 {
		return strings.Join(parts[:n-1], ", ") + " or " + parts[n-1]
	}
	return strings.Join(parts, "")
}
