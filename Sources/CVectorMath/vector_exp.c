// y = exp(a·x + b) over arrays through glibc's libmvec (x86-64 vector function ABI:
// _ZGVeN16v_expf takes and returns 16 floats in a zmm register, _ZGVdN8v_expf 8 in a ymm).
#include "CVectorMath.h"

#if defined(__x86_64__) && defined(__linux__)
#include <immintrin.h>

__attribute__((target("avx512f"))) __m512 _ZGVeN16v_expf(__m512);
__attribute__((target("avx2"))) __m256 _ZGVdN8v_expf(__m256);

__attribute__((target("avx512f"))) static void exp16(float *y, const float *x, long count, float a, float b) {
  const __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
  long i = 0;
  for (; i + 16 <= count; i += 16) {
    __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), va), vb);
    _mm512_storeu_ps(y + i, _ZGVeN16v_expf(v));
  }
  if (i < count) {
    const __mmask16 mask = (__mmask16)((1u << (count - i)) - 1);
    __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x + i), va), vb);
    _mm512_mask_storeu_ps(y + i, mask, _ZGVeN16v_expf(v));
  }
}

__attribute__((target("avx2"))) static void exp8(float *y, const float *x, long count, float a, float b) {
  const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
  long i = 0;
  for (; i + 8 <= count; i += 8) {
    __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), va), vb);
    _mm256_storeu_ps(y + i, _ZGVdN8v_expf(v));
  }
  if (i < count) {
    float buffer[8] = {0};
    for (long j = 0; j < count - i; j++) buffer[j] = x[i + j];
    __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(buffer), va), vb);
    _mm256_storeu_ps(buffer, _ZGVdN8v_expf(v));
    for (long j = 0; j < count - i; j++) y[i + j] = buffer[j];
  }
}

int sld_vector_exp_width(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") ? 16 : __builtin_cpu_supports("avx2") ? 8 : 0;
}

void sld_vector_exp(float *y, const float *x, long count, float a, float b) {
  if (sld_vector_exp_width() == 16) {
    exp16(y, x, count, a, b);
  } else {
    exp8(y, x, count, a, b);
  }
}

#else
int sld_vector_exp_width(void) { return 0; }
void sld_vector_exp(float *y, const float *x, long count, float a, float b) {
  (void)y; (void)x; (void)count; (void)a; (void)b;
}
#endif
