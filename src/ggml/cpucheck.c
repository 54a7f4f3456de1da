/* Startup CPU check: exits with one clear line, instead of dying of SIGILL in the first kernel,
 * when this CPU lacks an instruction-set feature the ggml build assumes.
 *
 * Compiled WITHOUT the ISA flags ggml gets: ggml_cpu_has_*() and Rust's is_*_feature_detected!
 * answer from compile-time flags when the feature is enabled for the build, so they say "yes" on
 * any CPU. build.rs passes one NEED_* define per feature the ggml flags turn on (read off the
 * compiler's predefined macros), plus GEMLET_CPU_NAME and the builds to suggest.
 *
 * It runs as a high-priority constructor, before Rust's main and before C++ static
 * initializers compiled with the ISA flags. */
#include <stdio.h>
#include <unistd.h>
#if defined(__linux__) && (defined(__aarch64__) || defined(__arm__))
#include <sys/auxv.h>
#endif

/* Read from Rust so the linker keeps this object out of the static archive. */
int gemlet_cpucheck_anchor = 1;

static void lacks(const char *feature, const char *build) {
    dprintf(2,
            "error: this gemlet was built for %s, which needs %s, and this CPU does not have it; "
            "use the %s build\n",
            GEMLET_CPU_NAME, feature, build);
    _exit(1);
}

__attribute__((constructor(101))) static void gemlet_cpucheck(void) {
#if defined(__aarch64__) && defined(__linux__)
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    (void)hw;
    (void)hw2;
#ifdef NEED_DOTPROD
    if (!(hw & (1UL << 20))) lacks("dotprod (HWCAP_ASIMDDP)", "armv8-a");
#endif
#ifdef NEED_FP16
    if (!(hw & (1UL << 10))) lacks("fp16 arithmetic (HWCAP_ASIMDHP)", "armv8-a");
#endif
#ifdef NEED_SVE
    if (!(hw & (1UL << 22))) lacks("SVE (HWCAP_SVE)", "armv8.2-a+dotprod");
#endif
#ifdef NEED_I8MM
    if (!(hw2 & (1UL << 13))) lacks("i8mm (HWCAP2_I8MM)", "armv8.2-a+dotprod");
#endif
#elif defined(__arm__) && defined(__linux__)
    unsigned long hw = getauxval(AT_HWCAP);
    (void)hw;
#ifdef NEED_NEON
    if (!(hw & (1UL << 12))) lacks("NEON (HWCAP_NEON)", "vfpv3-d16");
#endif
#ifdef NEED_VFPV4
    if (!(hw & (1UL << 16))) lacks("VFPv4 (HWCAP_VFPv4)", "vfpv3-d16");
#endif
#elif defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
#ifdef NEED_SSE42
    if (!__builtin_cpu_supports("sse4.2")) lacks("SSE4.2", "x86-64");
#endif
#ifdef NEED_AVX
    if (!__builtin_cpu_supports("avx")) lacks("AVX", "x86-64-v2");
#endif
#ifdef NEED_AVX2
    if (!__builtin_cpu_supports("avx2")) lacks("AVX2", "x86-64-v2");
#endif
#ifdef NEED_FMA
    if (!__builtin_cpu_supports("fma")) lacks("FMA", "x86-64-v2");
#endif
#ifdef NEED_F16C
    if (!__builtin_cpu_supports("f16c")) lacks("F16C", "x86-64-v2");
#endif
#ifdef NEED_AVX512F
    if (!__builtin_cpu_supports("avx512f")) lacks("AVX-512F", "x86-64-v3");
#endif
#ifdef NEED_AVX512BW
    if (!__builtin_cpu_supports("avx512bw")) lacks("AVX-512BW", "x86-64-v3");
#endif
#ifdef NEED_AVX512VNNI
    if (!__builtin_cpu_supports("avx512vnni")) lacks("AVX-512 VNNI", "x86-64-v3");
#endif
#ifdef NEED_AVX512BF16
    if (!__builtin_cpu_supports("avx512bf16")) lacks("AVX-512 BF16", "x86-64-v3");
#endif
#ifdef NEED_AVXVNNI
    if (!__builtin_cpu_supports("avxvnni")) lacks("AVX-VNNI", "x86-64-v3");
#endif
#endif
}
