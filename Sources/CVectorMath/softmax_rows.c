// Attention's softmax and its gradient, one row per call, in AVX-512 with few passes over the
// row: the maximum; the exps (glibc's libmvec) with their sum; the scaling with the bf16 copy.
// The gradient: the dot product; the update with the bf16 copy. Sums keep 16 float lanes and
// fold them into a double every 256 elements, so a row's result does not depend on where it
// sits in memory. Only where sld_vector_exp_width() is 16; elsewhere LoRAKernels' Swift code
// runs.
#include "CVectorMath.h"

#if defined(__x86_64__) && defined(__linux__)
#include <immintrin.h>
#include <math.h>
#include "bf16_round.h"

__attribute__((target("avx512f"))) __m512 _ZGVeN16v_expf(__m512);

__attribute__((target("avx512f"))) static inline __mmask16 tail(long left) {
  return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}

// Writes the bf16 of v's lanes in mask to dst.
__attribute__((target("avx512f"))) static inline void store_rounded(uint16_t *dst, __m512 v, __mmask16 mask) {
  _mm512_mask_cvtepi32_storeu_epi16(dst, mask, round16(_mm512_castps_si512(v)));
}

// The double sum of 16 float lanes.
__attribute__((target("avx512f"))) static inline double fold(__m512 lanes) {
  const __m512d low = _mm512_cvtps_pd(_mm512_castps512_ps256(lanes));
  const __m512d high = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(lanes), 1)));
  return _mm512_reduce_add_pd(_mm512_add_pd(low, high));
}

__attribute__((target("avx512f"))) static void zero16(float *row, uint16_t *rounded, long count) {
  for (long i = 0; i < count; i += 16) {
    const __mmask16 mask = tail(count - i);
    _mm512_mask_storeu_ps(row + i, mask, _mm512_setzero_ps());
    if (rounded) _mm512_mask_cvtepi32_storeu_epi16(rounded + i, mask, _mm512_setzero_si512());
  }
}

__attribute__((target("avx512f"))) static void softmax16(
    float *row, long visible, long first, long own, uint16_t *rounded) {
  float *s = row + first;
  const long n = own - first;
  __m512 best = _mm512_set1_ps(-INFINITY);
  for (long i = 0; i < n; i += 16) {
    const __mmask16 mask = tail(n - i);
    best = _mm512_mask_max_ps(best, mask, best, _mm512_maskz_loadu_ps(mask, s + i));
  }
  const __m512 shift = _mm512_set1_ps(-_mm512_reduce_max_ps(best));
  double total = 0;
  for (long start = 0; start < n; start += 256) {
    const long end = start + 256 < n ? start + 256 : n;
    __m512 lanes = _mm512_setzero_ps();
    for (long i = start; i < end; i += 16) {
      const __mmask16 mask = tail(end - i);
      const __m512 e = _ZGVeN16v_expf(_mm512_add_ps(_mm512_maskz_loadu_ps(mask, s + i), shift));
      _mm512_mask_storeu_ps(s + i, mask, e);
      lanes = _mm512_mask_add_ps(lanes, mask, lanes, e);
    }
    total += fold(lanes);
  }
  const __m512 factor = _mm512_set1_ps((float)(1 / total));
  for (long i = 0; i < n; i += 16) {
    const __mmask16 mask = tail(n - i);
    const __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, s + i), factor);
    _mm512_mask_storeu_ps(s + i, mask, p);
    if (rounded) store_rounded(rounded + first + i, p, mask);
  }
  zero16(row, rounded, first);
  zero16(row + own, rounded ? rounded + own : 0, visible - own);
}

__attribute__((target("avx512f"))) static void softmax_gradient16(
    float *dp, const float *p, long visible, uint16_t *rounded) {
  double dot = 0;
  for (long start = 0; start < visible; start += 256) {
    const long end = start + 256 < visible ? start + 256 : visible;
    __m512 lanes = _mm512_setzero_ps();
    for (long i = start; i < end; i += 16) {
      const __mmask16 mask = tail(end - i);
      lanes = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, p + i), _mm512_maskz_loadu_ps(mask, dp + i), lanes);
    }
    dot += fold(lanes);
  }
  const __m512 d = _mm512_set1_ps((float)dot);
  for (long i = 0; i < visible; i += 16) {
    const __mmask16 mask = tail(visible - i);
    const __m512 g =
        _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, p + i), _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, dp + i), d));
    _mm512_mask_storeu_ps(dp + i, mask, g);
    if (rounded) store_rounded(rounded + i, g, mask);
  }
}

void sld_softmax_row(float *row, long visible, long first, long own, uint16_t *rounded) {
  softmax16(row, visible, first, own, rounded);
}

void sld_softmax_gradient_row(float *dp, const float *p, long visible, uint16_t *rounded) {
  softmax_gradient16(dp, p, visible, rounded);
}

#else
void sld_softmax_row(float *row, long visible, long first, long own, uint16_t *rounded) {
  (void)row; (void)visible; (void)first; (void)own; (void)rounded;
}
void sld_softmax_gradient_row(float *dp, const float *p, long visible, uint16_t *rounded) {
  (void)dp; (void)p; (void)visible; (void)rounded;
}
#endif
