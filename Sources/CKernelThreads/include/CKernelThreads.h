// Kernel threads: each thread that runs kernels (a rank's thread) gets its own pool of
// worker threads, made on first use and ended when that thread ends. A parallel loop wakes
// them through one atomic counter; they spin a short while before sleeping, so loops that
// follow each other (a training step runs about fifty per layer) find them awake.
#ifndef SLD_KERNEL_THREADS_H
#define SLD_KERNEL_THREADS_H

#ifdef __cplusplus
extern "C" {
#endif

/// The body of a parallel loop: called once for every index, on any of the threads.
typedef void (*sld_pool_body)(void *context, long index);

/// Calls body(context, i) for every i in 0..<count on the calling thread and up to
/// `threads` − 1 workers of its pool (made as needed), and returns when all are done.
/// Indices are handed out one at a time, in increasing order. Called from inside a loop
/// (a worker, or the calling thread while its loop runs), the indices run on the caller
/// alone, in order.
void sld_pool_run(long count, int threads, void *context, sld_pool_body body);

/// Binds the calling thread to cpus[0] and worker i of its pool to cpus[i + 1] (workers made
/// later too); count 0 unbinds none and stops binding later workers. Returns 0, or the first
/// error number the platform gave (the threads it refused keep running where they were).
int sld_pool_pin(const int *cpus, int count);

/// Workers the calling thread's pool has started.
int sld_pool_workers(void);

/// The kernel's thread ids (gettid) of the calling thread's workers that have started
/// running, at most `capacity`; returns how many.
int sld_pool_worker_ids(long *ids, int capacity);

/// The CPU the calling thread runs on now (sched_getcpu), or -1.
int sld_current_cpu(void);

#ifdef __cplusplus
}
#endif

#endif
