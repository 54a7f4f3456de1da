/* Memory read bandwidth: every thread sums its share of a buffer much larger than the caches,
 * repeatedly; the best pass is reported in GB/s (10^9 bytes per second).
 * usage: membw [THREADS] [MiB]   (defaults: 2 threads, 1024 MiB)
 * Built and run by scripts/bench-vs-llama.sh to relate token generation to what the memory
 * can deliver: each generated token reads every weight once. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct job {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
};

static void *reader(void *arg) {
    struct job *j = arg;
    /* Four independent accumulators so the loop is bound by loads, not by one add chain. */
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i + 4 <= j->n; i += 4) {
        a += j->p[i];
        b += j->p[i + 1];
        c += j->p[i + 2];
        d += j->p[i + 3];
    }
    j->sum = a + b + c + d;
    return NULL;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 1024;
    if (threads < 1 || threads > 256 || mib < 64) {
        fprintf(stderr, "usage: membw [THREADS 1..256] [MiB >= 64]\n");
        return 2;
    }
    size_t bytes = mib << 20, words = bytes / 8;
    uint64_t *buf = malloc(bytes);
    if (!buf) {
        fprintf(stderr, "membw: cannot allocate %zu MiB\n", mib);
        return 1;
    }
    for (size_t i = 0; i < words; i++) buf[i] = i; /* touch every page */
    pthread_t tid[256];
    struct job jobs[256];
    double best = 0;
    uint64_t check = 0;
    for (int pass = 0; pass < 6; pass++) {
        size_t share = words / threads;
        double t0 = now();
        for (int t = 0; t < threads; t++) {
            jobs[t] = (struct job){buf + t * share, share, 0};
            pthread_create(&tid[t], NULL, reader, &jobs[t]);
        }
        for (int t = 0; t < threads; t++) {
            pthread_join(tid[t], NULL);
            check += jobs[t].sum;
        }
        double gbs = (double)(share * threads * 8) / (now() - t0) / 1e9;
        if (pass > 0 && gbs > best) best = gbs; /* pass 0 warms up */
    }
    printf("%.1f\n", best);
    free(buf);
    return check == 42 ? 3 : 0; /* keeps the sums live */
}
