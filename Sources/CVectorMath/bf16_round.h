// fp32 → bf16 rounding of 16 lanes, shared by the C files that write bf16 (not part of the
// module's interface): round to nearest, ties to even; a NaN stays a quiet NaN with its sign;
// subnormals are kept. The result is in each 32-bit lane's low half.
#ifndef SLD_BF16_ROUND_H
#define SLD_BF16_ROUND_H

#if defined(__x86_64__) && defined(__linux__)
#include <immintrin.h>

__attribute__((target("avx512f"))) static inline __m512i round16(__m512i b) {
  const __m512i one = _mm512_set1_epi32(1), half = _mm512_set1_epi32(0x7FFF);
  const __m512i high = _mm512_srli_epi32(b, 16);
  const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(b, half), _mm512_and_si512(high, one)), 16);
  const __m512i nan = _mm512_or_si512(high, _mm512_set1_epi32(0x0040));
  const __mmask16 isNaN = _mm512_cmpgt_epu32_mask(
      _mm512_and_si512(b, _mm512_set1_epi32(0x7FFFFFFF)), _mm512_set1_epi32(0x7F800000));
  return _mm512_mask_mov_epi32(rounded, isNaN, nan);
}
#endif

#endif
