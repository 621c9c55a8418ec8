/*
 * core/isa.h - which instruction set pare's kernels run with.
 *
 * A portable build (the default `make` on x86-64) compiles the files with SIMD kernels once
 * per level below and picks one level per process, the first time it is asked: the best the
 * CPU and the operating system support (cpuid on x86-64, getauxval(AT_HWCAP) on aarch64), or
 * a lower one named by the environment variable PARE_ISA (generic, avx2, avx512; generic,
 * dotprod), which tests and benchmarks use to run every path on one machine. An aarch64
 * portable build has the levels generic (armv8-a, NEON) and dotprod. A build for one instruction set (`make ARCH=native`, ARCH=x86-64-v3, an aarch64
 * build) has the one level it was compiled for. The level never changes within a process, so
 * every kernel of a computation (the packing of a matrix and the product that reads it, the
 * activations' rounding and the dot products) comes from the same level.
 */
#ifndef PARE_CORE_ISA_H
#define PARE_CORE_ISA_H

#include <stdbool.h>

typedef enum {
    PARE_ISA_GENERIC = 0, /* plain C, whatever the compiler makes of it (aarch64: NEON by autovectorization) */
    PARE_ISA_AVX2 = 1,    /* x86-64-v3: AVX2, FMA, F16C, BMI1/2, LZCNT, MOVBE */
    PARE_ISA_AVX512 = 2,  /* x86-64-v4 + AVX-512 VNNI */
    PARE_ISA_DOTPROD = 3, /* aarch64: armv8.2-a + the dot-product instructions (SDOT, UDOT) */
    PARE_ISA_COUNT
} pare_isa;

/* The level the kernels of this process run with (decided once, thread-safe). */
pare_isa pare_isa_active(void);
/* The best level this CPU and OS support, whatever was built. */
pare_isa pare_isa_cpu(void);
/* Whether this binary carries kernels of that level. */
bool pare_isa_built(pare_isa isa);
/* "generic", "avx2", "avx512", "dotprod". */
const char *pare_isa_name(pare_isa isa);
/* A line for --version: the active level, the CPU's best, the levels built, and why the
 * active one was chosen (e.g. "avx2 (PARE_ISA; cpu avx512; built generic avx2 avx512)"). */
const char *pare_isa_describe(void);

#endif
