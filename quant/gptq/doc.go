// Package gptq implements GPTQ (Frantar et al. 2022, "GPTQ: Accurate
// Post-Training Quantization for Generative Pre-trained Transformers") for
// any group-scaled number format of the quant package.
//
// The algorithm follows the reference implementation (IST-DASLab/gptq,
// gptq.py fasterquant) step by step:
//
//   - H = 2XᵀX/n is accumulated over calibration tokens by [Hessian], as a
//     running mean (the reference's rescaling), in F32 or F64;
//   - dead input columns (diag(H) = 0) get H[j,j] = 1 and W[:,j] = 0;
//   - optional act-order permutes columns by decreasing diag(H); the group of
//     each column is recorded in g_idx; with static groups, scales are fitted
//     on the original column order before any update and g_idx stays the
//     identity grouping (what kernels without g_idx support need);
//   - damping adds percdamp·mean(diag(H)) to the diagonal, then the upper
//     Cholesky factor of H⁻¹ drives the column-by-column error feedback,
//     with lazy batch updates every BlockSize columns;
//   - a group's scale is fitted when its first column is reached (on the
//     already-updated weights), optionally by a search over clipping ratios
//     that minimises the group's H-weighted rounding error.
//
// Linear algebra (Cholesky, inverse, GEMM, SYRK) uses gonum, a well-kept
// pure-Go BLAS/LAPACK; the per-column inner loop is hand-written because it
// is the algorithm itself. Everything runs in float64 except the optional
// F32 Hessian accumulation.
package gptq
