# pare - build, test, bench.
#   make deps      install the Debian packages pare needs (as root)
#   make           $(B)/pare and $(B)/libpare.a (-O2)
#   make test      module tests and CLI tests under AddressSanitizer + UBSan
#   make bench     speed and memory benchmarks (minutes; not part of CI)
#   make install PREFIX=/usr/local
#
# ARCH=portable (the default) builds a binary for any CPU of its architecture: on x86-64 the
# files with SIMD kernels (ISA_SRC) are compiled three times, for x86-64-v2 (generic),
# x86-64-v3 (avx2) and x86-64-v4 + VNNI (avx512), on aarch64 twice, for armv8-a (generic)
# and armv8.2-a + dotprod, and the kernels are chosen when pare runs (core/isa.h); the rest
# is compiled for the lowest level. ARCH=native, ARCH=x86-64-v3, ... build
# for that one instruction set only.

PREFIX   ?= /usr/local
ARCH     ?= portable
B        ?= build
CC       ?= cc
PKGS     := libzip libcjson libxxhash openblas libpcre2-8 lapacke
DEB_PKGS := build-essential pkg-config libzip-dev libcjson-dev libxxhash-dev libopenblas-dev \
            libpcre2-dev liblapacke-dev python3 python3-numpy qemu-user

PKG_CONFIG ?= pkg-config
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)

WARN     := -Wall -Wextra -Wpedantic -Werror -Wno-unused-parameter -Wno-format-truncation
MACHINE  := $(shell $(CC) -dumpmachine 2>/dev/null)
ifeq ($(ARCH),portable)
  ifneq ($(filter x86_64-%,$(MACHINE)),)
    MARCH    := -march=x86-64-v2
    DISPATCH := 1
  else ifneq ($(filter aarch64-%,$(MACHINE)),)
    MARCH    := -march=armv8-a
    DISPATCH := 1
  endif
else
  MARCH    := -march=$(ARCH)
endif
CFLAGS_COMMON := -std=c11 -D_DEFAULT_SOURCE -D_FILE_OFFSET_BITS=64 -g $(WARN) \
                 -I. $(PKG_CFLAGS) -MMD -MP $(if $(DISPATCH),-DPARE_DISPATCH)
CFLAGS   ?= -O2
SAN      := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDLIBS   := $(PKG_LIBS) -lpthread -lm

MODULES  := core formats quant prune lora verify pipeline
LIB_SRC  := $(foreach m,$(MODULES),$(wildcard $(m)/*.c))
CMD_SRC  := $(wildcard cmd/*.c)
TEST_SRC := $(wildcard tests/test_*.c)

# Files with SIMD kernels: compiled once per level in a portable x86-64 build.
ISA_SRC  := verify/forward.c verify/gemm.c verify/kgemm.c verify/iqgemm.c verify/qgemm.c verify/perplexity.c \
            quant/q_simd.c lora/merge.c prune/prune.c
ifneq ($(filter aarch64-%,$(MACHINE)),)
LEVELS   := generic dotprod
LEVEL_FLAGS_generic := -march=armv8-a
LEVEL_FLAGS_dotprod := -march=armv8.2-a+dotprod
else
LEVELS   := generic avx2 avx512
LEVEL_FLAGS_generic := -march=x86-64-v2
LEVEL_FLAGS_avx2    := -march=x86-64-v3
LEVEL_FLAGS_avx512  := -march=x86-64-v4 -mavx512vnni
endif
# binutils of the target (a cross compiler's: aarch64-linux-gnu-ld, ...)
TOOLS    := $(if $(filter $(shell uname -m)-%,$(MACHINE)),,$(MACHINE)-)

ifeq ($(DISPATCH),1)
PLAIN_SRC := $(filter-out $(ISA_SRC),$(LIB_SRC))
OBJ      := $(PLAIN_SRC:%.c=$(B)/obj/%.o) $(LEVELS:%=$(B)/obj/isa-%.o)
SOBJ     := $(PLAIN_SRC:%.c=$(B)/san/%.o) $(LEVELS:%=$(B)/san/isa-%.o)
else
OBJ      := $(LIB_SRC:%.c=$(B)/obj/%.o)
SOBJ     := $(LIB_SRC:%.c=$(B)/san/%.o)
endif
CMD_OBJ  := $(CMD_SRC:%.c=$(B)/obj/%.o)
SCMD_OBJ := $(CMD_SRC:%.c=$(B)/san/%.o)
TESTS    := $(TEST_SRC:tests/%.c=$(B)/san/tests/%)

# Objects depend on the flags they were built with: a changed ARCH, CC or CFLAGS rebuilds them
# (the stamp file is rewritten only when its text changes).
FLAGS_STAMP := $(B)/.flags
FLAGS_TEXT  := $(CC) $(CFLAGS_COMMON) $(MARCH) $(CFLAGS) $(SAN) $(LEVELS)
$(shell mkdir -p $(B) && echo '$(FLAGS_TEXT)' | cmp -s - $(FLAGS_STAMP) || echo '$(FLAGS_TEXT)' >$(FLAGS_STAMP))

.PHONY: all deps test bench install clean check-headers fixtures fuzz test-aarch64 deps-aarch64
all: $(B)/pare $(B)/libpare.a

deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "all build dependencies present"; fi

$(B)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(CFLAGS_COMMON) $(MARCH) $(CFLAGS) -c $< -o $@

$(B)/san/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "CC (asan) $<"
	@$(CC) $(CFLAGS_COMMON) $(MARCH) $(SAN) -c $< -o $@

# One level's kernels: ISA_SRC compiled with the level's flags, linked into one object whose
# global symbols are renamed NAME -> NAME__LEVEL (calls between its files stay in the level;
# the modules' isa_dispatch.c forward the rest of pare to the chosen level).
define LEVEL_RULES
$(B)/$(1)/lvl-$(2)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $$(dir $$@)
	@echo "CC ($(2)$(if $(filter san,$(1)), asan)) $$<"
	@$$(CC) $$(CFLAGS_COMMON) $$(LEVEL_FLAGS_$(2)) $(3) -c $$< -o $$@

$(B)/$(1)/isa-$(2).o: $$(ISA_SRC:%.c=$(B)/$(1)/lvl-$(2)/%.o)
	@echo "LD -r $$@"
	@$(TOOLS)ld -r -o $$@.tmp $$^
	@$(TOOLS)nm -g --defined-only $$@.tmp | awk 'NF == 3 { print $$$$3, $$$$3 "__$(2)" }' >$$@.syms
	@$(TOOLS)objcopy --redefine-syms=$$@.syms $$@.tmp $$@
	@rm -f $$@.tmp
endef
$(foreach l,$(LEVELS),$(eval $(call LEVEL_RULES,obj,$(l),$$(CFLAGS))))
$(foreach l,$(LEVELS),$(eval $(call LEVEL_RULES,san,$(l),$$(SAN))))

$(B)/libpare.a: $(OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/san/libpare.a: $(SOBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/pare: $(CMD_OBJ) $(B)/libpare.a
	$(CC) $(CFLAGS) -o $@ $(CMD_OBJ) $(B)/libpare.a $(LDLIBS)

$(B)/san/pare: $(SCMD_OBJ) $(B)/san/libpare.a
	$(CC) $(SAN) -o $@ $(SCMD_OBJ) $(B)/san/libpare.a $(LDLIBS)

$(B)/san/tests/%: $(B)/san/tests/%.o $(B)/san/libpare.a
	$(CC) $(SAN) -o $@ $< $(B)/san/libpare.a $(LDLIBS)

# Each public header must compile on its own as C11.
check-headers:
	@for h in $(foreach m,$(MODULES),$(wildcard $(m)/*.h)); do \
	  case $$h in *_impl.h) continue;; esac; \
	  echo "#include \"$$h\"" | $(CC) -std=c11 -Wall -Wextra -Wpedantic -Werror -I. $(PKG_CFLAGS) -x c -fsyntax-only - \
	  || { echo "header $$h does not compile alone"; exit 1; }; done; echo "headers compile alone"

# make test T=NAME runs one module test (T=test_eval) or one CLI script (T=usage); each
# module test runs only the tests named in TH_ONLY=a,b when it is set (tests/th.h).
ifneq ($(T),)
TESTS_RUN := $(filter %/$(T),$(TESTS))
CLI_RUN   := $(if $(TESTS_RUN),none,$(T))
else
TESTS_RUN := $(TESTS)
endif
test: check-headers $(TESTS_RUN) $(B)/san/pare $(B)/pare $(B)/examples/quickstart $(B)/faults/inject.so
	@PARE=$(B)/san/pare PARE_RELEASE=$(B)/pare FAULTLIB=$(abspath $(B)/faults/inject.so) \
	  QUICKSTART=$(B)/examples/quickstart CLI_ONLY=$(CLI_RUN) sh tests/run.sh $(TESTS_RUN)

# The fault injector of tests/cli/faults.sh (LD_PRELOAD into the release binary: the
# sanitizers' own interposition must come first and would refuse it).
$(B)/faults/inject.so: tests/faults/inject.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -Wall -Wextra -Werror -O1 -shared -fPIC -o $@ $< -ldl

# The library as a C program sees it: installed into a staging folder, the example built
# with nothing but `pkg-config --cflags --libs pare` (tests/cli/example.sh runs it).
STAGE := $(B)/stage
$(B)/examples/quickstart: examples/quickstart.c $(B)/libpare.a $(B)/pare pare.h
	@$(MAKE) --no-print-directory install PREFIX=$(abspath $(STAGE)) >/dev/null
	@mkdir -p $(dir $@)
	$(CC) -std=c11 $(WARN) -O2 -o $@ $< $$(PKG_CONFIG_PATH=$(abspath $(STAGE))/lib/pkgconfig $(PKG_CONFIG) --cflags --libs pare)

# The module tests built for aarch64 (gcc-aarch64-linux-gnu, Debian's :arm64 libraries) and
# run under qemu-user (whose default CPU has the dot-product instructions): the dotprod
# level, and the tests of kernel code again at the generic level (PARE_ISA). Without the
# sanitizers (ASan's shadow memory does not map under qemu-user); not part of `make test`.
AARCH64_ENV := CC=aarch64-linux-gnu-gcc B=build-aarch64 \
               PKG_CONFIG="env PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig pkg-config"
AARCH64_TESTS := $(TEST_SRC:tests/%.c=build-aarch64/obj/tests/%)
deps-aarch64:
	@dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
	@missing=""; for p in gcc-aarch64-linux-gnu qemu-user libzip-dev:arm64 libcjson-dev:arm64 libxxhash-dev:arm64 \
	  libopenblas-dev:arm64 libpcre2-dev:arm64 liblapacke-dev:arm64; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
test-aarch64: deps-aarch64
	@$(MAKE) --no-print-directory $(AARCH64_ENV) $(AARCH64_TESTS)
	@RUN="qemu-aarch64 -L /" RUN_LOWER=generic sh tests/run.sh $(AARCH64_TESTS)

# (-O1: Debian's gcc 12 for aarch64 stops with an internal error vectorizing test_hf.c at -O2)
$(B)/obj/tests/%.o: CFLAGS = -O1
$(B)/obj/tests/%: $(B)/obj/tests/%.o $(B)/libpare.a
	$(CC) $(CFLAGS) -o $@ $< $(B)/libpare.a $(LDLIBS)

bench: $(B)/pare
	sh bench/run.sh

fixtures:
	/usr/bin/python3 tests/fixtures/make_fixtures.py

# The binary, the library, its public headers (include/pare/: pare.h and every module's
# header but the *_impl.h ones) and pare.pc for pkg-config.
PUBLIC_H := $(filter-out %_impl.h,$(foreach m,$(MODULES),$(wildcard $(m)/*.h)))
install: $(B)/pare $(B)/libpare.a
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/pare
	install -m 755 $(B)/pare $(DESTDIR)$(PREFIX)/bin/pare
	install -m 644 $(B)/libpare.a $(DESTDIR)$(PREFIX)/lib/libpare.a
	install -m 644 pare.h $(DESTDIR)$(PREFIX)/include/pare/pare.h
	for h in $(PUBLIC_H); do install -D -m 644 $$h $(DESTDIR)$(PREFIX)/include/pare/$$h; done
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$${prefix}/lib' 'includedir=$${prefix}/include' '' \
	  'Name: pare' 'Description: converts, shrinks and validates large language model files' \
	  'Version: 0.1.0' 'Requires: $(PKGS)' 'Cflags: -I$${includedir}/pare' \
	  'Libs: -L$${libdir} -lpare -lpthread -lm' >$(DESTDIR)$(PREFIX)/lib/pkgconfig/pare.pc

clean:
	rm -rf $(B)

-include $(OBJ:.o=.d) $(CMD_OBJ:.o=.d) $(SOBJ:.o=.d) $(SCMD_OBJ:.o=.d) $(TESTS:=.d)
-include $(foreach l,$(LEVELS),$(ISA_SRC:%.c=$(B)/obj/lvl-$(l)/%.d) $(ISA_SRC:%.c=$(B)/san/lvl-$(l)/%.d))
-include tests/fuzz/fuzz.mk
.SECONDARY:
