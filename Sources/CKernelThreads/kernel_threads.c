// Per-thread pools of kernel worker threads (see CKernelThreads.h).
//
// A loop is published by one atomic word: a generation number and how many workers take
// part, so a worker that wakes late never reads a later loop's share as its own. Workers that
// take part run indices from a shared counter and then count themselves out; the calling
// thread runs indices too and waits for that count to reach zero. An idle worker spins on the
// word (`pause`) for a while, then sleeps on a condition variable; the caller wakes sleepers
// only when there are any (sequentially consistent counters on both sides, so none is
// missed).
#define _GNU_SOURCE
#include "CKernelThreads.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define SLD_PAUSE() _mm_pause()
#else
#define SLD_PAUSE() ((void)0)
#endif

// How long an idle worker spins before it sleeps.
enum { MAX_WORKERS = 1023, PARTS_BITS = 10, SPIN_NANOSECONDS = 200000 };

struct pool;

struct worker {
  struct pool *pool;
  int id;
  int cpu;  // -1: not bound
  unsigned long start;  // the word when it was made
  pthread_t thread;
  atomic_long tid;  // the kernel's thread id, once it runs
};

struct pool {
  atomic_ulong word;  // generation << PARTS_BITS | workers taking part
  atomic_long next;
  atomic_int active;
  atomic_int sleepers;
  long count;
  void *context;
  sld_pool_body body;
  int stopping;
  int running;
  int workers;
  struct worker *slots[MAX_WORKERS];
  int cpus[MAX_WORKERS + 1];
  int pinned;  // entries of cpus
  pthread_mutex_t lock;
  pthread_cond_t wake;
};

static __thread struct pool *own_pool;
static __thread int is_worker;
static pthread_key_t pool_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000L + t.tv_nsec;
}

static int bind_thread(pthread_t thread, int cpu) {
  if (cpu < 0 || cpu >= CPU_SETSIZE) return EINVAL;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(thread, sizeof set, &set);
}

static void run_indices(struct pool *p) {
  for (;;) {
    long i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
    if (i >= p->count) return;
    p->body(p->context, i);
  }
}

// The word once it differs from `seen`: spinning first, then asleep.
static unsigned long wait_for_change(struct pool *p, unsigned long seen) {
  unsigned long word = atomic_load_explicit(&p->word, memory_order_acquire);
  if (word != seen) return word;
  const long start = now_ns();
  for (int n = 1;; n++) {
    SLD_PAUSE();
    word = atomic_load_explicit(&p->word, memory_order_acquire);
    if (word != seen) return word;
    if ((n & 127) == 0 && now_ns() - start > SPIN_NANOSECONDS) break;
  }
  pthread_mutex_lock(&p->lock);
  atomic_fetch_add(&p->sleepers, 1);
  while ((word = atomic_load(&p->word)) == seen) pthread_cond_wait(&p->wake, &p->lock);
  atomic_fetch_sub(&p->sleepers, 1);
  pthread_mutex_unlock(&p->lock);
  return word;
}

static void *worker_main(void *argument) {
  struct worker *w = argument;
  struct pool *p = w->pool;
  is_worker = 1;
  atomic_store(&w->tid, (long)syscall(SYS_gettid));
  if (w->cpu >= 0) bind_thread(pthread_self(), w->cpu);
  unsigned long seen = w->start;
  for (;;) {
    seen = wait_for_change(p, seen);
    if (p->stopping) return NULL;
    if (w->id < (int)(seen & ((1UL << PARTS_BITS) - 1))) {
      run_indices(p);
      atomic_fetch_sub_explicit(&p->active, 1, memory_order_release);
    }
  }
}

// Publishes a new word (after the loop's fields) and wakes sleeping workers.
static void publish(struct pool *p, unsigned long parts) {
  unsigned long generation = (atomic_load_explicit(&p->word, memory_order_relaxed) >> PARTS_BITS) + 1;
  atomic_store(&p->word, generation << PARTS_BITS | parts);
  if (atomic_load(&p->sleepers) > 0) {
    pthread_mutex_lock(&p->lock);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
  }
}

// Ends a pool's workers when the thread that owns it ends.
static void end_pool(void *value) {
  struct pool *p = value;
  if (!p) return;
  p->stopping = 1;
  publish(p, 0);
  for (int i = 0; i < p->workers; i++) {
    pthread_join(p->slots[i]->thread, NULL);
    free(p->slots[i]);
  }
  pthread_cond_destroy(&p->wake);
  pthread_mutex_destroy(&p->lock);
  free(p);
  own_pool = NULL;
}

static void make_key(void) { pthread_key_create(&pool_key, end_pool); }

static struct pool *pool_of_this_thread(void) {
  if (own_pool) return own_pool;
  pthread_once(&key_once, make_key);
  struct pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_setspecific(pool_key, p);
  own_pool = p;
  return p;
}

// Starts workers until the pool has `wanted` (or as many as the platform gives).
static int grow(struct pool *p, int wanted) {
  if (wanted > MAX_WORKERS) wanted = MAX_WORKERS;
  while (p->workers < wanted) {
    struct worker *w = calloc(1, sizeof *w);
    if (!w) break;
    w->pool = p;
    w->id = p->workers;
    w->cpu = w->id + 1 < p->pinned ? p->cpus[w->id + 1] : -1;
    w->start = atomic_load(&p->word);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
      free(w);
      break;
    }
    p->slots[p->workers++] = w;
  }
  return p->workers;
}

void sld_pool_run(long count, int threads, void *context, sld_pool_body body) {
  if (count <= 0) return;
  struct pool *p = is_worker || threads <= 1 || count == 1 ? NULL : pool_of_this_thread();
  int helpers = threads - 1;
  if (helpers > count - 1) helpers = (int)(count - 1);
  if (p && !p->running && helpers > 0) {
    int have = grow(p, helpers);
    if (helpers > have) helpers = have;
  }
  if (!p || p->running || helpers <= 0) {
    for (long i = 0; i < count; i++) body(context, i);
    return;
  }
  p->count = count;
  p->context = context;
  p->body = body;
  atomic_store_explicit(&p->next, 0, memory_order_relaxed);
  atomic_store_explicit(&p->active, helpers, memory_order_relaxed);
  p->running = 1;
  publish(p, (unsigned long)helpers);
  run_indices(p);
  for (long n = 1; atomic_load_explicit(&p->active, memory_order_acquire) > 0; n++) {
    SLD_PAUSE();
    if (n > 100000) sched_yield();  // a helper lost its CPU (more threads than cores)
  }
  p->running = 0;
}

int sld_pool_pin(const int *cpus, int count) {
  struct pool *p = pool_of_this_thread();
  if (!p) return ENOMEM;
  if (count < 0) count = 0;
  if (count > MAX_WORKERS + 1) count = MAX_WORKERS + 1;
  memcpy(p->cpus, cpus, sizeof(int) * (size_t)count);
  p->pinned = count;
  int status = count > 0 ? bind_thread(pthread_self(), cpus[0]) : 0;
  for (int i = 0; i < p->workers && i + 1 < count; i++) {
    p->slots[i]->cpu = cpus[i + 1];
    int refused = bind_thread(p->slots[i]->thread, cpus[i + 1]);
    if (refused && !status) status = refused;
  }
  return status;
}

int sld_current_cpu(void) { return sched_getcpu(); }

int sld_pool_workers(void) { return own_pool ? own_pool->workers : 0; }

int sld_pool_worker_ids(long *ids, int capacity) {
  int count = 0;
  for (int i = 0; own_pool && i < own_pool->workers && count < capacity; i++) {
    long tid = atomic_load(&own_pool->slots[i]->tid);
    if (tid > 0) ids[count++] = tid;
  }
  return count;
}
