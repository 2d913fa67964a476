// Vector exp from glibc's libmvec, behind a run-time CPU check (the package is built for
// every x86-64, so the AVX2 and AVX-512 code paths are compiled with target attributes and
// chosen when the CPU has them).
#ifndef SLD_VECTOR_MATH_H
#define SLD_VECTOR_MATH_H

#ifdef __cplusplus
extern "C" {
#endif

/// The widest libmvec exp this CPU runs: 16 (AVX-512), 8 (AVX2), or 0 (none: the caller
/// uses its own code).
int sld_vector_exp_width(void);

/// y[i] = exp(a * x[i] + b) for i in 0..<count (x and y may be the same array).
/// Requires sld_vector_exp_width() > 0.
void sld_vector_exp(float *y, const float *x, long count, float a, float b);

#ifdef __cplusplus
}
#endif

#endif
