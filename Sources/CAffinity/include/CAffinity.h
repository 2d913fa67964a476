// Thread placement through glibc (pthread_setaffinity_np and sched_getaffinity, which
// Swift's Glibc module does not import: they need _GNU_SOURCE and the CPU_* macros).
#ifndef SLD_AFFINITY_H
#define SLD_AFFINITY_H

#ifdef __cplusplus
extern "C" {
#endif

/// Writes the CPUs the calling thread may run on into `cpus` (at most `capacity`, in
/// increasing order); returns how many, or -1 with errno set.
int sld_thread_cpus(int *cpus, int capacity);

#ifdef __cplusplus
}
#endif

#endif
