package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
)

func TestInspectCommand(t *testing.T) {
	for _, tc := range []struct {
		path    string
		match   string
		tensors int
		want    string
	}{
		{assets.Model(t, "qwen3moe-nano"), "", 0, "qwen3_moe"},
		{assets.Model(t, "qwen3-nano"), "model.layers.0.*", 11, "qwen3"},
		{assets.Shared(t, "gguf", "qwen3-nano-f16.gguf"), "blk.0.*", 11, "gguf v3"},
	} {
		var out, errb bytes.Buffer
		args := []string{"inspect", "--json", tc.path}
		if tc.match != "" {
			args = []string{"inspect", "--json", "--match", tc.match, tc.path}
		}
		if code := runCLI(context.Background(), args, &out, &errb); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errb.String())
		}
		var rep inspectReport
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		if tc.tensors > 0 && len(rep.Tensors) != tc.tensors {
			t.Errorf("%s: %d tensors, want %d", tc.path, len(rep.Tensors), tc.tensors)
		}
		if !strings.Contains(out.String(), tc.want) {
			t.Errorf("%s: output lacks %q", tc.path, tc.want)
		}
		var sum int64
		for _, r := range rep.Tensors {
			sum += r.Bytes
		}
		if sum != rep.Total || sum == 0 {
			t.Errorf("%s: total %d, sum %d", tc.path, rep.Total, sum)
		}
	}
	// The sharded model's text listing names the shard of each tensor.
	var out, errb bytes.Buffer
	if code := runCLI(context.Background(), []string{"inspect", assets.Model(t, "qwen3moe-nano")}, &out, &errb); code != 0 {
		t.Fatal(errb.String())
	}
	if !strings.Contains(out.String(), "model-00002-of-00003.safetensors") || !strings.Contains(out.String(), "moe: 8 experts") {
		t.Errorf("text output: %s", out.String()[:min(400, out.Len())])
	}
	if code := runCLI(context.Background(), []string{"inspect", t.TempDir()}, &out, &errb); code == 0 {
		t.Error("empty dir inspected without error")
	}
}
