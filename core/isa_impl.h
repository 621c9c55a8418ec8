/*
 * core/isa_impl.h - run-time dispatch of the functions of files compiled once per level.
 *
 * In a portable build (PARE_DISPATCH) the Makefile compiles each file with kernels once per
 * level (x86-64: x86-64-v2, x86-64-v3, x86-64-v4 + VNNI; aarch64: armv8-a, armv8.2-a +
 * dotprod), links each level's objects into one and renames every global symbol it defines
 * NAME -> NAME__generic / NAME__avx2 / NAME__avx512 (NAME__dotprod),
 * so that calls inside a level stay inside it. A module's dispatch file then defines each
 * function that the rest of pare calls with one PARE_ISA_FN line, which forwards to the
 * level pare_isa_active() chose. Not a public header.
 */
#ifndef PARE_CORE_ISA_IMPL_H
#define PARE_CORE_ISA_IMPL_H

#include "core/isa.h"

#if defined(__aarch64__)
#define PARE_ISA_LEVELS(name) name##__generic, name##__dotprod
#define PARE_ISA_PICK(name) (pare_isa_active() == PARE_ISA_DOTPROD ? name##__dotprod : name##__generic)
#else
#define PARE_ISA_LEVELS(name) name##__generic, name##__avx2, name##__avx512
#define PARE_ISA_PICK(name)                                                                                            \
    (pare_isa_active() == PARE_ISA_AVX512 ? name##__avx512 : pare_isa_active() == PARE_ISA_AVX2 ? name##__avx2       \
                                                                                                 : name##__generic)
#endif

/* ret name(params) { return name__LEVEL(args); }, the levels declared with name's own type
 * (so a changed prototype fails to compile here, not at run time). */
#define PARE_ISA_FN(ret, name, params, args)                                                                           \
    extern __typeof__(name) PARE_ISA_LEVELS(name);                                                                     \
    ret name params { return PARE_ISA_PICK(name) args; }
#define PARE_ISA_VOID_FN(name, params, args)                                                                           \
    extern __typeof__(name) PARE_ISA_LEVELS(name);                                                                     \
    void name params { PARE_ISA_PICK(name) args; }

#endif
