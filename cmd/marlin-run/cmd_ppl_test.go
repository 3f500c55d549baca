package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
)

func TestPPLCommand(t *testing.T) {
	model := assets.Model(t, "qwen3moe-nano")
	text := assets.Shared(t, "corpus", "valid.txt")
	var out, errb bytes.Buffer
	code := runCLI(context.Background(), []string{"ppl", model, text, "--windows", "2", "--llamacpp-protocol", "--experts", "--json", "--backend", "cpu"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var res struct {
		LlamaCpp bool `json:"llamacpp_protocol"`
		Result   struct {
			PPL    float64
			Tokens int
		} `json:"result"`
		Experts map[string][]int `json:"expert_token_counts"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if !res.LlamaCpp || res.Result.Tokens != 2*127 || !(res.Result.PPL > 1 && !math.IsInf(res.Result.PPL, 0)) {
		t.Errorf("unexpected result %+v", res)
	}
	if len(res.Experts) != 4 {
		t.Errorf("expert counts for %d layers, want 4", len(res.Experts))
	}
	for g, c := range res.Experts {
		sum := 0
		for _, n := range c {
			sum += n
		}
		if sum != 2*256*2 {
			t.Errorf("%s: %d routed tokens, want %d", g, sum, 2*256*2)
		}
	}
	if !strings.Contains(errb.String(), "windows 2/2") {
		t.Errorf("no progress lines on stderr: %q", errb.String())
	}

	// With a reference model (itself), KL is zero.
	out.Reset()
	errb.Reset()
	if code := runCLI(context.Background(), []string{"ppl", model, text, "--windows", "1", "--ref", model, "--backend", "cpu"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "KL(ref‖model) 0.000000") {
		t.Errorf("KL with itself: %s", out.String())
	}

	for _, args := range [][]string{
		{"ppl", model},
		{"ppl", filepath.Join(model, "nope"), text},
		{"ppl", model, filepath.Join(model, "missing.txt")},
		{"ppl", model, text, "--windows", "100000"},
	} {
		out.Reset()
		errb.Reset()
		if code := runCLI(context.Background(), args, &out, &errb); code == 0 {
			t.Errorf("%v: exit 0", args)
		}
	}
}
