package llamacpp

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"

	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/model/hfconfig"
)

// ArchName is llama.cpp's general.architecture for a config, from the
// hfconfig.Families registry ("deepseek2" for GLM-4.7-Flash, which
// llama.cpp runs with its DeepSeek-V2 graph: MLA + routed/shared experts).
func ArchName(cfg *hfconfig.Config) (string, error) {
	a, err := cfg.LlamaCppArch()
	if err != nil {
		return "", fmt.Errorf("llamacpp: %w", err)
	}
	return a, nil
}

// Info is what the general.* keys say about the model.
type Info struct {
	// Name is general.name (llama.cpp's converter derives it from the
	// model directory: "qwen3-nano" → "Qwen3 Nano").
	Name string
	// FileType is general.file_type.
	FileType uint32
}

// NameFromDir turns a model directory name into general.name the way
// llama.cpp's converter does for a directory without a model card:
// separators become spaces and the text is title-cased as Python's
// str.title does (a letter after a non-letter is upper case, others lower
// case: "qwen3moe-nano" → "Qwen3Moe Nano").
func NameFromDir(dir string) string {
	words := strings.FieldsFunc(dir, func(r rune) bool { return r == '-' || r == '_' || r == ' ' })
	for i, w := range words {
		r := []rune(w)
		prevLetter := false
		for j, c := range r {
			if prevLetter {
				r[j] = unicode.ToLower(c)
			} else {
				r[j] = unicode.ToUpper(c)
			}
			prevLetter = unicode.IsLetter(c)
		}
		words[i] = string(r)
	}
	return strings.Join(words, " ")
}

// SizeLabel is gguf-py's size_label: "3.7M" for dense models and
// "8x2.3M" (experts × parameters of one expert plus the shared weights) for
// MoE models, from the planned tensors.
func SizeLabel(ts []*Tensor) string {
	var total, shared, expert, expertSum, nExpT int
	for _, t := range ts {
		n := t.Elements()
		if strings.Contains(t.Name, "_exps.") {
			e := t.Dims[len(t.Dims)-1]
			expert += n / e
			expertSum += e
			nExpT++
		} else {
			shared += n
		}
		total += n
	}
	if nExpT > 0 {
		return fmt.Sprintf("%dx%s", expertSum/nExpT, roundedCount(shared+expert))
	}
	return roundedCount(total)
}

// roundedCount is gguf-py's model_weight_count_rounded_notation with
// min_digits 2.
func roundedCount(n int) string {
	f := float64(n)
	var scaled float64
	var suffix string
	switch {
	case f > 1e12:
		scaled, suffix = f*1e-12, "T"
	case f > 1e9:
		scaled, suffix = f*1e-9, "B"
	case f > 1e6:
		scaled, suffix = f*1e-6, "M"
	default:
		scaled, suffix = f*1e-3, "K"
	}
	digits := len(strings.TrimLeft(strconv.Itoa(int(math.RoundToEven(scaled))), "0"))
	fix := max(2-digits, 0)
	return strconv.FormatFloat(scaled, 'f', fix, 64) + suffix
}

// ArchKVs returns general.* and the architecture's hyperparameter keys in
// the order llama.cpp's converter writes them.
func ArchKVs(cfg *hfconfig.Config, ts []*Tensor, info Info) ([]gguf.KV, error) {
	arch, err := ArchName(cfg)
	if err != nil {
		return nil, err
	}
	k := func(s string) string { return arch + "." + s }
	kv := []gguf.KV{
		str("general.architecture", arch),
		str("general.type", "model"),
	}
	if info.Name != "" {
		kv = append(kv, str("general.name", info.Name))
	}
	kv = append(kv, str("general.size_label", SizeLabel(ts)))
	if cfg.NumLayers <= 0 || cfg.HiddenSize <= 0 || cfg.NumHeads <= 0 {
		return nil, fmt.Errorf("llamacpp: config lacks layer count, hidden size or heads")
	}
	if cfg.Hybrid != nil {
		hk, err := nemotronKVs(cfg, arch)
		if err != nil {
			return nil, err
		}
		kv = append(kv, hk...)
		kv = append(kv, u32("general.file_type", info.FileType), u32("general.quantization_version", 2))
		return kv, nil
	}
	ctx := cfg.MaxPositionEmbeddings
	kv = append(kv,
		u32(k("block_count"), uint32(cfg.NumLayers)),
		u32(k("context_length"), uint32(ctx)),
		u32(k("embedding_length"), uint32(cfg.HiddenSize)),
		u32(k("feed_forward_length"), uint32(cfg.IntermediateSize)),
		u32(k("attention.head_count"), uint32(cfg.NumHeads)),
	)
	kvHeads := cfg.NumKVHeads
	if arch == "deepseek2" {
		kvHeads = 1 // MLA: one latent KV head (llama.cpp's MQA-style layout)
	}
	kv = append(kv, u32(k("attention.head_count_kv"), uint32(kvHeads)))
	if cfg.Rope.Theta > 0 {
		kv = append(kv, f32(k("rope.freq_base"), float32(cfg.Rope.Theta)))
	}
	kv = append(kv, f32(k("attention.layer_norm_rms_epsilon"), float32(cfg.RMSNormEps)))
	if cfg.MoE.NumExperts > 0 {
		kv = append(kv,
			u32(k("expert_count"), uint32(cfg.MoE.NumExperts)),
			u32(k("expert_used_count"), uint32(cfg.MoE.NumExpertsPerTok)))
	}
	fileType := u32("general.file_type", info.FileType)
	switch arch {
	case "qwen3", "qwen3moe":
		kv = append(kv,
			u32(k("attention.key_length"), uint32(cfg.HeadDim)),
			u32(k("attention.value_length"), uint32(cfg.HeadDim)),
			fileType)
		if arch == "qwen3moe" {
			kv = append(kv, u32(k("expert_feed_forward_length"), uint32(cfg.MoE.IntermediateSize)))
		}
	case "deepseek2":
		ml := cfg.MLA
		if ml == nil {
			return nil, fmt.Errorf("llamacpp: %s config has no MLA settings", cfg.ModelType)
		}
		m := cfg.MoE
		kv = append(kv,
			u32(k("expert_group_count"), uint32(max(m.NGroup, 1))),
			u32(k("expert_group_used_count"), uint32(max(m.TopKGroup, 1))),
			fileType,
			u32(k("leading_dense_block_count"), uint32(m.FirstKDenseReplace)),
			u32(k("vocab_size"), uint32(cfg.VocabSize)))
		if ml.QLoRARank > 0 {
			kv = append(kv, u32(k("attention.q_lora_rank"), uint32(ml.QLoRARank)))
		}
		kv = append(kv,
			u32(k("attention.kv_lora_rank"), uint32(ml.KVLoRARank)),
			u32(k("attention.key_length"), uint32(ml.KVLoRARank+ml.QKRopeHeadDim)),
			u32(k("attention.value_length"), uint32(ml.KVLoRARank)),
			u32(k("attention.key_length_mla"), uint32(ml.QKNopeHeadDim+ml.QKRopeHeadDim)),
			u32(k("attention.value_length_mla"), uint32(ml.VHeadDim)),
			u32(k("expert_feed_forward_length"), uint32(m.IntermediateSize)),
			u32(k("expert_shared_count"), uint32(m.NumSharedExperts)),
			f32(k("expert_weights_scale"), float32(m.RoutedScalingFactor)),
			boolean(k("expert_weights_norm"), m.NormTopKProb))
		// llama.cpp's expert_gating_func: 1 softmax, 2 sigmoid. Without it
		// llama.cpp falls back to softmax, which is wrong for GLM-4.7-Flash.
		switch m.ScoringFunc {
		case "sigmoid":
			kv = append(kv, u32(k("expert_gating_func"), 2))
		case "softmax":
			kv = append(kv, u32(k("expert_gating_func"), 1))
		case "":
			if cfg.ModelType == "glm4_moe_lite" {
				kv = append(kv, u32(k("expert_gating_func"), 2))
			}
		default:
			return nil, fmt.Errorf("llamacpp: unknown scoring_func %q", m.ScoringFunc)
		}
		kv = append(kv, u32(k("rope.dimension_count"), uint32(ml.QKRopeHeadDim)))
		if t := cfg.Rope.Type; t != "" && t != "default" {
			return nil, fmt.Errorf("llamacpp: rope_type %q is not exported yet", t)
		}
	default:
		return nil, fmt.Errorf("llamacpp: no hyperparameter keys for llama.cpp architecture %q (model_type %s)", arch, cfg.ModelType)
	}
	kv = append(kv, u32("general.quantization_version", 2))
	return kv, nil
}
