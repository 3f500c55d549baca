package hadamard

// Tensor Meta keys recording a rotation, so that later stages, exporters and
// runtimes know what was done to a weight.
const (
	// MetaInput is the Spec of the rotation applied to the weight's input
	// dimension (W → W·Rᵀ).
	MetaInput = "rotation.input"
	// MetaInputPlacement says where the matching activation rotation x → R·x
	// lives: PlacementFolded (the producing layer's weights or the
	// embedding already emit rotated activations) or PlacementOnline (a
	// runtime must rotate the activations before this matmul; a runtime
	// that cannot may un-rotate the dequantized weight, Q·R, instead).
	MetaInputPlacement = "rotation.input.placement"
	// MetaOutput is the Spec of a rotation folded into the weight's output
	// dimension (W → R·W), making it produce rotated activations.
	MetaOutput = "rotation.output"
	// MetaNormFolded marks a weight that absorbed the RMSNorm scale γ of
	// its input (W → W·diag(γ)); the norm's own weight became all ones.
	MetaNormFolded = "rotation.norm_folded"
)

// Placements of an input rotation's activation side.
const (
	PlacementFolded = "folded"
	PlacementOnline = "online"
)
