package gptq

// Tensor Meta keys describing a GPTQ result (on the packed weight's
// tensors, next to quant's keys) and a stored Hessian.
const (
	MetaActOrder     = "gptq.actorder"      // "true" or "false"
	MetaDamp         = "gptq.damp"          // the dampening used (PercDamp)
	MetaStaticGroups = "gptq.static_groups" // "true": groups fitted before any update
	MetaErr          = "gptq.err"           // layer error tr((W−Q)H(W−Q)ᵀ)
	MetaRefit        = "gptq.refit"         // "true": GGML block scales re-solved after GPTQ
	MetaSamples      = "gptq.samples"       // calibration rows behind a Hessian
	MetaKind         = "gptq.kind"          // "hessian" on a Hessian tensor
)
