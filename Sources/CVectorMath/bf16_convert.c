// fp32 → bf16 conversion of arrays, with the bits of LoRAKernels' BFloat16.bits: round to
// nearest, ties to even; a NaN stays a quiet NaN with its sign; subnormals are kept, not
// flushed (so not the AVX512_BF16 instruction, which flushes them). AVX-512F and AVX2 code
// paths are compiled with target attributes and chosen at run time.
#include "CVectorMath.h"

static inline uint16_t bf16_bits(float value) {
  uint32_t b;
  __builtin_memcpy(&b, &value, sizeof b);
  uint16_t nan = (uint16_t)(b >> 16) | 0x0040;
  uint16_t rounded = (uint16_t)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
  return (b & 0x7FFFFFFFu) > 0x7F800000u ? nan : rounded;
}

static void convert_scalar(uint16_t *dst, const float *src, long count) {
  for (long i = 0; i < count; i++) dst[i] = bf16_bits(src[i]);
}

#if defined(__x86_64__) && defined(__linux__)
#include <immintrin.h>
#include "bf16_round.h"

__attribute__((target("avx512f"))) static void convert16(uint16_t *dst, const float *src, long count) {
  long i = 0;
  for (; i + 16 <= count; i += 16) {
    __m512i r = round16(_mm512_loadu_si512((const void *)(src + i)));
    _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtepi32_epi16(r));
  }
  if (i < count) {
    const __mmask16 mask = (__mmask16)((1u << (count - i)) - 1);
    __m512i r = round16(_mm512_maskz_loadu_epi32(mask, src + i));
    _mm512_mask_cvtepi32_storeu_epi16(dst + i, mask, r);
  }
}

__attribute__((target("avx2"))) static void convert8(uint16_t *dst, const float *src, long count) {
  const __m256i one = _mm256_set1_epi32(1), half = _mm256_set1_epi32(0x7FFF);
  const __m256i magnitude = _mm256_set1_epi32(0x7FFFFFFF), infinity = _mm256_set1_epi32(0x7F800000);
  const __m256i quiet = _mm256_set1_epi32(0x0040);
  long i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256i b = _mm256_loadu_si256((const __m256i *)(src + i));
    const __m256i high = _mm256_srli_epi32(b, 16);
    const __m256i rounded =
        _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(b, half), _mm256_and_si256(high, one)), 16);
    // The magnitude is below 2³¹, so a signed comparison is the unsigned one.
    const __m256i isNaN = _mm256_cmpgt_epi32(_mm256_and_si256(b, magnitude), infinity);
    const __m256i r = _mm256_blendv_epi8(rounded, _mm256_or_si256(high, quiet), isNaN);
    // Every lane is below 2¹⁶: packing with unsigned saturation keeps it, lane halves in order.
    const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    _mm_storeu_si128((__m128i *)(dst + i), packed);
  }
  convert_scalar(dst + i, src + i, count - i);
}

void sld_bf16_convert(uint16_t *dst, const float *src, long count) {
  static int width = -1;  // the CPU's, found once (a benign race: every thread finds the same)
  if (width < 0) width = sld_vector_exp_width();
  sld_bf16_convert_lanes(dst, src, count, width);
}

void sld_bf16_convert_lanes(uint16_t *dst, const float *src, long count, int lanes) {
  const int width = sld_vector_exp_width();
  if (lanes == 16 && width == 16) {
    convert16(dst, src, count);
  } else if (lanes >= 8 && width >= 8) {
    convert8(dst, src, count);
  } else {
    convert_scalar(dst, src, count);
  }
}

#else
void sld_bf16_convert(uint16_t *dst, const float *src, long count) { convert_scalar(dst, src, count); }
void sld_bf16_convert_lanes(uint16_t *dst, const float *src, long count, int lanes) {
  (void)lanes;
  convert_scalar(dst, src, count);
}
#endif
