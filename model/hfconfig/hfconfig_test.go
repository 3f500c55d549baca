package hfconfig

import (
	"reflect"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
)

func TestSharedConfigs(t *testing.T) {
	// Expected values transcribed from ../shared/testdata/models/*/config.json
	// and the testdata README.
	q, err := Load(assets.Model(t, "qwen3-nano"))
	if err != nil {
		t.Fatal(err)
	}
	if q.ModelType != "qwen3" || q.HiddenSize != 256 || q.NumLayers != 4 || q.NumHeads != 4 || q.NumKVHeads != 2 ||
		q.HeadDim != 64 || q.IntermediateSize != 768 || q.VocabSize != 2112 || q.RMSNormEps != 1e-6 ||
		q.Rope.Theta != 10000 || q.Rope.Type != "default" || q.Rope.Interleave || !q.TieWordEmbeddings ||
		q.MoE.NumExperts != 0 || q.MLA != nil || q.IsMoELayer(0) || !reflect.DeepEqual(q.EOSTokenIDs, []int{2045}) {
		t.Errorf("qwen3-nano: %+v", q)
	}

	m, err := Load(assets.Model(t, "qwen3moe-nano"))
	if err != nil {
		t.Fatal(err)
	}
	if m.ModelType != "qwen3_moe" || m.TieWordEmbeddings || m.MoE.NumExperts != 8 || m.MoE.NumExpertsPerTok != 2 ||
		m.MoE.IntermediateSize != 128 || !m.MoE.NormTopKProb || m.MoE.DecoderSparseStep != 1 || m.MoE.ScoringFunc != "softmax" ||
		m.HeadDim != 64 || m.NumKVHeads != 2 || m.MLA != nil {
		t.Errorf("qwen3moe-nano: %+v", m)
	}
	for i := range 4 {
		if !m.IsMoELayer(i) {
			t.Errorf("qwen3moe-nano: layer %d should be MoE", i)
		}
	}

	g, err := Load(assets.Model(t, "glm47-nano"))
	if err != nil {
		t.Fatal(err)
	}
	wantMLA := MLA{QLoRARank: 256, KVLoRARank: 128, QKNopeHeadDim: 64, QKRopeHeadDim: 32, VHeadDim: 64}
	if g.ModelType != "glm4_moe_lite" || g.MLA == nil || *g.MLA != wantMLA || g.HeadDim != 96 || g.NumKVHeads != 4 ||
		g.MoE.NumExperts != 8 || g.MoE.NumSharedExperts != 1 || g.MoE.NumExpertsPerTok != 2 || g.MoE.FirstKDenseReplace != 1 ||
		g.MoE.RoutedScalingFactor != 1.8 || g.MoE.NGroup != 1 || g.MoE.TopKGroup != 1 || g.MoE.TopKMethod != "noaux_tc" ||
		g.MoE.ScoringFunc != "sigmoid" || !g.MoE.NormTopKProb || g.MoE.IntermediateSize != 128 || !g.Rope.Interleave ||
		g.TieWordEmbeddings || g.IntermediateSize != 768 {
		t.Errorf("glm47-nano: %+v MLA %+v", g, g.MLA)
	}
	for i, want := range []bool{false, true, true, true} {
		if g.IsMoELayer(i) != want {
			t.Errorf("glm47-nano: IsMoELayer(%d) = %v", i, !want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ json, want string }{
		{`{"model_type":"llama","hidden_size":8}`, `unsupported model_type "llama" (supported: deepseek_v3, glm4_moe_lite, nemotron_h, qwen3, qwen3_moe)`},
		{`{}`, "no model_type"},
		{`{"model_type":"qwen3"}`, "missing hidden_size"},
		{`[1]`, "config.json"},
		{`{"model_type":"qwen3","hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":3,"intermediate_size":8,"vocab_size":8}`, "divide"},
		{`{"model_type":"qwen3_moe","hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":8,"vocab_size":8}`, "number of experts"},
		{`{"model_type":"glm4_moe_lite","hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":8,"vocab_size":8,"n_routed_experts":2,"num_experts_per_tok":1,"moe_intermediate_size":4}`, "kv_lora_rank"},
		{`{"model_type":"qwen3","hidden_size":8,"num_hidden_layers":5000,"num_attention_heads":2,"intermediate_size":8,"vocab_size":8}`, "num_hidden_layers 5000 is over"},
		{`{"model_type":"qwen3","hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":8,"vocab_size":9000000000}`, "vocab_size must be in 1..16777216"},
		{`{"model_type":"qwen3_moe","hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":8,"vocab_size":8,"num_experts":1000000000,"num_experts_per_tok":1,"moe_intermediate_size":4}`, "experts is over"},
	} {
		_, err := Parse([]byte(tc.json))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%s) = %v, want error containing %q", tc.json, err, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"model_type":"qwen3","hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":8,"vocab_size":8,"rope_parameters":{"rope_theta":1e4,"factor":2}}`))
	f.Add([]byte(`{"model_type":"glm4_moe_lite","hidden_size":8,"num_hidden_layers":2,"num_attention_heads":2,"intermediate_size":8,"vocab_size":8,"n_routed_experts":2,"num_experts_per_tok":1,"moe_intermediate_size":4,"kv_lora_rank":4,"qk_nope_head_dim":4,"qk_rope_head_dim":2,"v_head_dim":4,"mlp_layer_types":["dense","sparse"]}`))
	f.Add([]byte(nemotronHub))
	f.Add([]byte(`{"model_type":"nemotron_h","hidden_size":8,"num_attention_heads":2,"vocab_size":8,"layers_block_type":["mamba","moe","attention","mlp"],"n_routed_experts":2,"num_experts_per_tok":1,"moe_intermediate_size":4,"time_step_limit":[0.0,-Infinity]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err == nil {
			for i := -1; i <= c.NumLayers; i++ {
				c.IsMoELayer(i)
			}
		}
	})
}
