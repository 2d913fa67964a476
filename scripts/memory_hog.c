// A memory-bandwidth load for scripts/bench_under_pressure.sh: streams a[i] = b[i]·0.5 + a[i]
// over two arrays of N MB each (argument, default 256) until killed; GB/s every 2 s on stderr.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
int main(int argc, char **argv) {
  size_t n = (argc > 1 ? atol(argv[1]) : 256) * (1 << 20) / sizeof(float);
  float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) { a[i] = 1; b[i] = 2; }
  struct timespec t0, t1; clock_gettime(CLOCK_MONOTONIC, &t0);
  double bytes = 0;
  for (;;) {
    for (size_t i = 0; i < n; i++) a[i] = b[i] * 0.5f + a[i];
    bytes += 3.0 * n * sizeof(float);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    if (s > 2) { fprintf(stderr, "%.1f GB/s\n", bytes / s / 1e9); bytes = 0; t0 = t1; }
  }
}
