// Vector exp from glibc's libmvec, and fp32 → bf16 conversion of arrays, behind a run-time
// CPU check (the package is built for every x86-64, so the AVX2 and AVX-512 code paths are
// compiled with target attributes and chosen when the CPU has them).
#ifndef SLD_VECTOR_MATH_H
#define SLD_VECTOR_MATH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The widest libmvec exp this CPU runs: 16 (AVX-512), 8 (AVX2), or 0 (none: the caller
/// uses its own code).
int sld_vector_exp_width(void);

/// y[i] = exp(a * x[i] + b) for i in 0..<count (x and y may be the same array).
/// Requires sld_vector_exp_width() > 0.
void sld_vector_exp(float *y, const float *x, long count, float a, float b);

/// dst[i] = the bf16 bits of src[i] for i in 0..<count: round to nearest, ties to even, NaN
/// kept quiet with its sign, subnormals kept (BFloat16.bits, 16 or 8 lanes at a time).
void sld_bf16_convert(uint16_t *dst, const float *src, long count);

/// sld_bf16_convert on the code path of `lanes` (16, 8, or 1: scalar), or the widest below
/// it that this CPU runs (for tests of each path).
void sld_bf16_convert_lanes(uint16_t *dst, const float *src, long count, int lanes);

/// Attention's softmax of one row of scaled scores row[0, visible): probabilities over
/// [first, own), zeros before and after; with `rounded` non-null, their bf16 bits there too.
/// Requires sld_vector_exp_width() == 16 (AVX-512); own > first.
void sld_softmax_row(float *row, long visible, long first, long own, uint16_t *rounded);

/// Softmax's gradient for one row: dp[i] = p[i] · (dp[i] − Σ_j p[j]·dp[j]) over [0, visible);
/// with `rounded` non-null, its bf16 bits there too. Requires sld_vector_exp_width() == 16.
void sld_softmax_gradient_row(float *dp, const float *p, long visible, uint16_t *rounded);

#ifdef __cplusplus
}
#endif

#endif
