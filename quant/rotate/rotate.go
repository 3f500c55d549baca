// Package rotate plans and applies a function-preserving rotation of a
// transformer's residual stream (QuaRot-style, with the block-diagonal
// Hadamard rotations of quant/hadamard): every Linear that reads the
// normalised residual stream gets its input dimension rotated, W → W·Rᵀ,
// with the inverse folded into the model rather than applied online:
//
//   - the RMSNorm scale γ in front of each reader is folded into the reader
//     (W → W·diag(γ)) and the norm's weight becomes all ones; RMSNorm
//     commutes with an orthogonal R (it only divides by the vector's norm),
//     so norm(R·h) = R·norm(h);
//   - the embedding rows are rotated (e → R·e), and every Linear that writes
//     into the residual stream (o_proj, down_proj of dense MLPs, routed and
//     shared experts) gets its output dimension rotated (W → R·W, bias
//     b → R·b), so the residual stream itself lives in the rotated basis;
//   - readers: q/k/v_proj (Qwen3), q_a_proj and kv_a_proj_with_mqa (MLA),
//     gate_proj/up_proj of every MLP and expert, the MoE router
//     (mlp.gate), and lm_head (which absorbs the final norm's γ; a tied
//     lm_head becomes its own tensor, so the model is untied).
//
// Rotations inside a block (o_proj's input from attention values,
// down_proj's input after SwiGLU, MLA's latent projections) cannot be folded
// this way; they are left unrotated here and MR-GPTQ rotates them with
// online placement (recorded in tensor Meta, see hadamard.MetaInputPlacement).
package rotate

import (
	"fmt"
	"sort"

	"github.com/marlin-llm/marlin/model/tensorname"
	"github.com/marlin-llm/marlin/quant/hadamard"
)

// Role is what a tensor is to the residual stream.
type Role int

// Roles.
const (
	// Keep: unrelated to the residual stream; unchanged.
	Keep Role = iota
	// Embed: the embedding table; rows rotated.
	Embed
	// Reader: a Linear reading the normalised residual; W·diag(γ)·Rᵀ.
	Reader
	// Writer: a Linear writing into the residual; R·W.
	Writer
	// WriterBias: a writer's bias; R·b.
	WriterBias
	// Norm: an RMSNorm whose γ was folded into its readers; all ones.
	Norm
)

var roleNames = [...]string{"keep", "embed", "reader", "writer", "writer_bias", "norm"}

// String names the role.
func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// Op is the planned transformation of one output tensor.
type Op struct {
	// Name is the output tensor's name.
	Name string
	// Source is the tensor it is computed from (Name, except for the
	// untied lm_head of a tied model, computed from the embedding).
	Source string
	Role   Role
	// Norm is the RMSNorm weight folded into a Reader ("" for none).
	Norm string
}

// Patterns (tensorname.Name.Is) of the decoder-layer tensors around the
// residual stream: those reading the attention input and the MLP input
// (after their RMSNorm) and those writing back to the residual stream.
var (
	inputReaders = []string{
		"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
		"self_attn.q_a_proj.weight", "self_attn.kv_a_proj_with_mqa.weight",
	}
	postReaders = []string{
		"mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.gate.weight",
		"mlp.experts.*.gate_proj.weight", "mlp.experts.*.up_proj.weight",
		"mlp.shared_experts.gate_proj.weight", "mlp.shared_experts.up_proj.weight",
		"mlp.shared_expert.gate_proj.weight", "mlp.shared_expert.up_proj.weight",
	}
	writers = []string{
		"self_attn.o_proj.weight", "mlp.down_proj.weight", "mlp.experts.*.down_proj.weight",
		"mlp.shared_experts.down_proj.weight", "mlp.shared_expert.down_proj.weight",
		"self_attn.o_proj.bias", "mlp.down_proj.bias", "mlp.experts.*.down_proj.bias",
		"mlp.shared_experts.down_proj.bias", "mlp.shared_expert.down_proj.bias",
	}
	layerNorms = []string{"input_layernorm.weight", "post_attention_layernorm.weight"}
)

// Names of the model-level tensors.
const (
	EmbedName  = "model.embed_tokens.weight"
	LMHeadName = "lm_head.weight"
	FinalNorm  = "model.norm.weight"
)

// Plan returns the operation for every tensor of a checkpoint (names) plus,
// for a tied model (tied and no lm_head.weight), an extra lm_head op built
// from the embedding. Ops are sorted by name.
func Plan(names []string, tied bool) ([]Op, error) {
	have := map[string]bool{}
	for _, n := range names {
		have[n] = true
	}
	if !have[EmbedName] {
		return nil, fmt.Errorf("rotate: checkpoint has no %s", EmbedName)
	}
	var ops []Op
	for _, n := range names {
		op := Op{Name: n, Source: n}
		tn := tensorname.Parse(n)
		inLayer := tn.Root == "model" && tn.Layer >= 0 // rotate reads model.layers.N. names only
		switch {
		case n == EmbedName:
			op.Role = Embed
		case n == LMHeadName:
			op.Role, op.Norm = Reader, FinalNorm
		case n == FinalNorm || inLayer && tn.Is(layerNorms...):
			op.Role = Norm
		case inLayer && tn.Is(inputReaders...):
			op.Role, op.Norm = Reader, tn.Prefix+"input_layernorm.weight"
		case inLayer && tn.Is(postReaders...):
			op.Role, op.Norm = Reader, tn.Prefix+"post_attention_layernorm.weight"
		case inLayer && tn.Is(writers...):
			op.Role = Writer
			if tn.Param == "bias" {
				op.Role = WriterBias
			}
		}
		if op.Norm != "" && !have[op.Norm] {
			return nil, fmt.Errorf("rotate: %s reads the residual through %s, which the checkpoint lacks", n, op.Norm)
		}
		ops = append(ops, op)
	}
	if !have[LMHeadName] {
		if !tied {
			return nil, fmt.Errorf("rotate: untied model without %s", LMHeadName)
		}
		if !have[FinalNorm] {
			return nil, fmt.Errorf("rotate: model without %s", FinalNorm)
		}
		ops = append(ops, Op{Name: LMHeadName, Source: EmbedName, Role: Reader, Norm: FinalNorm})
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].Name < ops[j].Name })
	return ops, nil
}

// Apply computes op's output from its source tensor w (row-major, shape)
// and, for readers, the folded norm's γ; rot rotates the hidden dimension.
// It returns the new values and the Meta entries recording what was done.
func Apply(op Op, w []float32, shape []int, gamma []float32, rot *hadamard.Rotation) ([]float32, map[string]string, error) {
	d := rot.Dim()
	n := 1
	for _, s := range shape {
		n *= s
	}
	if n != len(w) {
		return nil, nil, fmt.Errorf("rotate: %s: %d values for shape %v", op.Name, len(w), shape)
	}
	out := append([]float32(nil), w...)
	meta := map[string]string{}
	switch op.Role {
	case Keep:
		return out, meta, nil
	case Norm:
		if len(shape) != 1 || shape[0] != d {
			return nil, nil, fmt.Errorf("rotate: norm %s has shape %v, hidden is %d", op.Name, shape, d)
		}
		for i := range out {
			out[i] = 1
		}
		meta[hadamard.MetaNormFolded] = "ones"
		return out, meta, nil
	case WriterBias:
		if len(shape) != 1 || shape[0] != d {
			return nil, nil, fmt.Errorf("rotate: bias %s has shape %v, hidden is %d", op.Name, shape, d)
		}
		if err := rot.Apply(out, 1); err != nil {
			return nil, nil, err
		}
		meta[hadamard.MetaOutput] = rot.Spec()
		return out, meta, nil
	}
	if len(shape) != 2 {
		return nil, nil, fmt.Errorf("rotate: %s (%v) has shape %v, want 2-D", op.Name, op.Role, shape)
	}
	rows, cols := shape[0], shape[1]
	switch op.Role {
	case Embed:
		if cols != d {
			return nil, nil, fmt.Errorf("rotate: embedding %s has %d columns, hidden is %d", op.Name, cols, d)
		}
		if err := rot.Apply(out, rows); err != nil {
			return nil, nil, err
		}
		meta[hadamard.MetaOutput] = rot.Spec()
	case Reader:
		if cols != d {
			return nil, nil, fmt.Errorf("rotate: %s reads %d inputs, hidden is %d", op.Name, cols, d)
		}
		if op.Norm != "" {
			if len(gamma) != d {
				return nil, nil, fmt.Errorf("rotate: %s: norm %s has %d entries, want %d", op.Name, op.Norm, len(gamma), d)
			}
			for r := 0; r < rows; r++ {
				row := out[r*cols : (r+1)*cols]
				for c := range row {
					row[c] *= gamma[c]
				}
			}
			meta[hadamard.MetaNormFolded] = op.Norm
		}
		if err := rot.Apply(out, rows); err != nil {
			return nil, nil, err
		}
		meta[hadamard.MetaInput] = rot.Spec()
		meta[hadamard.MetaInputPlacement] = hadamard.PlacementFolded
	case Writer:
		if rows != d {
			return nil, nil, fmt.Errorf("rotate: %s writes %d outputs, hidden is %d", op.Name, rows, d)
		}
		if err := rot.ApplyColumns(out, cols); err != nil {
			return nil, nil, err
		}
		meta[hadamard.MetaOutput] = rot.Spec()
	}
	return out, meta, nil
}
