/* core/isa.c - detecting the CPU's instruction sets and choosing the kernels' level. */
#include "core/isa.h"

#include <pthread.h>
#include <stdio.h>
#if defined(__aarch64__)
#include <sys/auxv.h>
#endif
#include <stdlib.h>
#include <string.h>

/* PARE_DISPATCH (set by the Makefile for a portable x86-64 build): the files with kernels
 * are compiled once per level and every level is in the binary. Otherwise the one level the
 * compiler targets. */
#if defined(PARE_DISPATCH) && defined(__aarch64__)
static const bool built[PARE_ISA_COUNT] = {true, false, false, true};
#elif defined(PARE_DISPATCH)
static const bool built[PARE_ISA_COUNT] = {true, true, true, false};
#elif defined(__AVX512F__) && defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
static const bool built[PARE_ISA_COUNT] = {false, false, true, false};
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
static const bool built[PARE_ISA_COUNT] = {false, true, false, false};
#elif defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
static const bool built[PARE_ISA_COUNT] = {false, false, false, true};
#else
static const bool built[PARE_ISA_COUNT] = {true, false, false, false};
#endif

static const char *const names[PARE_ISA_COUNT] = {"generic", "avx2", "avx512", "dotprod"};

const char *pare_isa_name(pare_isa isa) {
    return (int)isa >= 0 && isa < PARE_ISA_COUNT ? names[isa] : "?";
}

bool pare_isa_built(pare_isa isa) { return (int)isa >= 0 && isa < PARE_ISA_COUNT && built[isa]; }

pare_isa pare_isa_cpu(void) {
#if defined(__x86_64__) || defined(__i386__)
    /* __builtin_cpu_supports checks the OS's XSAVE state too (XCR0), so a kernel that does
     * not save AVX-512 registers reports no AVX-512. x86-64-v3 also implies BMI1/2, LZCNT
     * and MOVBE, which the compiler may use in a v3 file; they come with AVX2 on every CPU
     * that has it, but are checked all the same. */
    __builtin_cpu_init();
    const bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") &&
                    __builtin_cpu_supports("movbe") && __builtin_cpu_supports("popcnt");
    const bool v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                    __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                    __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512vnni");
    return v4 ? PARE_ISA_AVX512 : v3 ? PARE_ISA_AVX2 : PARE_ISA_GENERIC;
#elif defined(__aarch64__)
    /* the kernel says what the CPU has; HWCAP_ASIMDDP is bit 20 */
    return getauxval(AT_HWCAP) & (1ul << 20) ? PARE_ISA_DOTPROD : PARE_ISA_GENERIC;
#else
    return PARE_ISA_GENERIC;
#endif
}

/* The choice, made once. The only state of this module: written inside pthread_once, read
 * only after it, so it is never seen half-made. */
typedef struct {
    pare_isa active;
    bool forced; /* PARE_ISA asked for it */
    char line[160];
} isa_choice;

static isa_choice choice;
static pthread_once_t choice_once = PTHREAD_ONCE_INIT;

static void choose(void) {
    const pare_isa cpu = pare_isa_cpu();
    pare_isa best = PARE_ISA_GENERIC;
    for (int i = PARE_ISA_COUNT - 1; i >= 0; i--)
        if (built[i] && i <= (int)cpu) {
            best = (pare_isa)i;
            break;
        }
    if (!built[best]) /* a one-level build run on a CPU below it: the level it has (it may crash) */
        for (int i = 0; i < PARE_ISA_COUNT; i++)
            if (built[i]) best = (pare_isa)i;
    const char *want = getenv("PARE_ISA");
    if (want && *want)
        for (int i = 0; i < PARE_ISA_COUNT; i++)
            if (!strcmp(want, names[i]) && built[i] && i <= (int)best) { /* only ever lower */
                best = (pare_isa)i;
                choice.forced = true;
            }
    choice.active = best;
    char lv[64] = "";
    for (int i = 0; i < PARE_ISA_COUNT; i++)
        if (built[i]) snprintf(lv + strlen(lv), sizeof lv - strlen(lv), "%s%s", *lv ? " " : "", names[i]);
    snprintf(choice.line, sizeof choice.line, "%s (%scpu %s; built %s)", names[best], choice.forced ? "PARE_ISA; " : "",
             names[cpu], lv);
}

pare_isa pare_isa_active(void) {
    pthread_once(&choice_once, choose);
    return choice.active;
}

const char *pare_isa_describe(void) {
    pthread_once(&choice_once, choose);
    return choice.line;
}
