// Package llamacpp exports Hugging Face checkpoints of the architectures
// marlin quantizes to GGUF files that llama.cpp loads and runs: qwen3,
// qwen3moe and deepseek2 (llama.cpp's graph for GLM-4.7-Flash /
// glm4_moe_lite, with deepseek2.expert_gating_func = 2 for its sigmoid
// router).
//
// It reproduces llama.cpp's converter (convert_hf_to_gguf.py): tensor names,
// metadata keys in the same order, expert tensors stacked per layer, MLA
// kv_b_proj split into per-head attn_k_b (transposed) and attn_v_b, and the
// byte-level BPE tokenizer embedded (tokenizer.ggml.model "gpt2", tokens
// padded with [PADn], token types, merges, pre-tokenizer recognised from
// the split regex, special ids in gguf-py's order). An F16 export of
// qwen3-nano is byte-identical to the converter's file.
//
// Tensor types come from a recipe (Recipes, from quant/ggml's GGUF-type
// registry): float types, "pure" block types, or one of llama-quantize's
// mixtures (Q2_K, Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M, IQ4_NL, IQ4_XS: a port of
// llama_tensor_get_type that chooses the same type per tensor as
// llama-quantize); blocks are encoded by quant/ggml bit-exactly as
// llama-quantize does, so a Q4_K_M export equals llama-quantize's output
// from our F16 export byte for byte. Packed
// weights whose format GGML can hold (MXFP4, symmetric INT4/INT8 with F16
// scales in groups of 32·k) are copied into blocks by a BlockSource
// without re-quantization.
//
// Writing streams: one planned tensor (one layer's experts for stacked
// tensors) is in memory at a time, and the file is written to a temporary
// name, fsynced and renamed (model/gguf.Create). ReadBack inverts the
// mapping so marlin's forward pass can run exactly the weights of a file.
//
// Measured (llama-perplexity -c 256 --chunks 64 on corpus/valid.txt, 2
// threads; see llama_test.go and goforward_test.go, MARLIN_SLOW=1):
//
//	            F16      Q8_0     Q4_0     MXFP4    Q4_K_M
//	qwen3-nano  33.1572  33.1657  33.5320  33.4223  33.4096
//	qwen3moe    34.2240  34.2480  34.5620  34.8499  34.3680
//	glm47-nano  34.8108  34.8312  35.1172  35.3033  35.0365
//
// F16 equals llama.cpp's own conversion; marlin's forward pass on the same
// dequantized weights agrees within 0.07% for every cell of F16..MXFP4.
package llamacpp
