# tests/fuzz/fuzz.mk - fuzzing of every parser; included by the Makefile.
#
#   make fuzz                   every target of tests/fuzz/fuzz_*.c for FUZZ_SECONDS (60) each,
#                               one at a time under nice; fails if any target crashed
#   make fuzz FUZZ_TARGETS="gguf pytorch" FUZZ_SECONDS=300
#   make fuzz-replay            the replay drivers that `make test` runs over tests/fuzz/regress
#
# libFuzzer targets are built with clang into build/fuzz/ (pare's sources compiled again with
# -fsanitize=fuzzer-no-link,address,undefined into build/fuzz/obj, apart from build/obj and
# build/san). New corpus entries go to build/fuzz/corpus/NAME, crashes to build/fuzz/crashes.
# The replay drivers are tests/fuzz/replay.c + fuzz_NAME.c built with $(CC) and the same
# sanitizers as the module tests, against build/san/libpare.a.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_TARGETS ?= $(FUZZ_NAMES)
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# clang does not know every gcc warning the Makefile turns off.
# One kernel level (the generic one): the fuzz targets drive parsers, not kernels.
FUZZ_CFLAGS  := $(filter-out -DPARE_DISPATCH,$(CFLAGS_COMMON)) -O1 -Wno-unknown-warning-option \
                -Wno-missing-field-initializers
FUZZ_OBJ     := $(LIB_SRC:%.c=build/fuzz/obj/%.o)
FUZZ_BINS    := $(FUZZ_NAMES:%=build/fuzz/fuzz_%)
REPLAY_BINS  := $(FUZZ_NAMES:%=build/san/fuzz/replay_%)
FUZZ_HDRS    := tests/fuzz/fuzz_util.h $(wildcard formats/*.h lora/*.h quant/*.h verify/*.h core/*.h cmd/*.h)
# fuzz_recipe drives cmd/run.c, so it links the CLI's objects too: cmd/main.c compiled with its
# main() renamed (libFuzzer's and replay.c's main run the target), the other cmd/ files as they are.
FUZZ_CMD_OBJ   := $(filter-out build/fuzz/obj/cmd/main.o,$(CMD_SRC:%.c=build/fuzz/obj/%.o)) build/fuzz/obj/cmd/main_lib.o
REPLAY_CMD_OBJ := $(filter-out build/san/cmd/main.o,$(SCMD_OBJ)) build/san/fuzz/cmd_main_lib.o
FUZZ_EXTRA_recipe   := build/fuzz/libpare_cmd.a
REPLAY_EXTRA_recipe := $(REPLAY_CMD_OBJ)

.PHONY: fuzz fuzz-build fuzz-replay fuzz-seeds

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "CC (fuzz) $<"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(FUZZ_SAN) -c $< -o $@

# clang 14 (Debian 12's) does not know __builtin_cpu_supports("movbe"), which core/isa.c
# checks; the fuzz build runs the generic kernels only, so a copy without that test will do.
build/fuzz/obj/core/isa.o: core/isa.c
	@mkdir -p $(dir $@)
	@echo "CC (fuzz) $< (without the movbe check)"
	@sed 's/__builtin_cpu_supports("movbe")/1/' $< >build/fuzz/obj/core/isa_fuzz.c
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -Icore -fsanitize=fuzzer-no-link $(FUZZ_SAN) -c build/fuzz/obj/core/isa_fuzz.c -o $@

build/fuzz/libpare.a: $(FUZZ_OBJ)
	@rm -f $@
	@ar rcs $@ $^

build/fuzz/obj/cmd/main_lib.o: cmd/main.c
	@mkdir -p $(dir $@)
	@echo "CC (fuzz) $< (main renamed)"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -Dmain=pare_cli_main -fsanitize=fuzzer-no-link $(FUZZ_SAN) -c $< -o $@

build/san/fuzz/cmd_main_lib.o: cmd/main.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "CC (asan) $< (main renamed)"
	@$(CC) $(CFLAGS_COMMON) $(MARCH) $(SAN) -Dmain=pare_cli_main -c $< -o $@

build/fuzz/libpare_cmd.a: $(FUZZ_CMD_OBJ)
	@rm -f $@
	@ar rcs $@ $^

build/fuzz/fuzz_recipe: $(FUZZ_EXTRA_recipe)
build/san/fuzz/replay_recipe: $(REPLAY_EXTRA_recipe)

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_HDRS) build/fuzz/libpare.a
	@echo "LD (fuzz) $@"
	@$(FUZZ_CC) $(filter-out -MMD -MP,$(FUZZ_CFLAGS)) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $< \
	    $(FUZZ_EXTRA_$*) build/fuzz/libpare.a $(LDLIBS)

build/san/fuzz/replay_%: tests/fuzz/replay.c tests/fuzz/fuzz_%.c $(FUZZ_HDRS) build/san/libpare.a
	@mkdir -p $(dir $@)
	@echo "LD (asan) $@"
	@$(CC) $(filter-out -MMD -MP,$(CFLAGS_COMMON)) $(SAN) -o $@ tests/fuzz/replay.c tests/fuzz/fuzz_$*.c \
	    $(REPLAY_EXTRA_$*) build/san/libpare.a $(LDLIBS)

fuzz-build: $(FUZZ_BINS)
fuzz-replay: $(REPLAY_BINS)

# tests/cli/fuzz_replay.sh runs the replay drivers.
test: $(REPLAY_BINS)

fuzz: $(FUZZ_BINS)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) sh tests/fuzz/run.sh $(FUZZ_TARGETS)

-include $(FUZZ_OBJ:.o=.d) $(FUZZ_CMD_OBJ:.o=.d)

# The hand-made seeds of tests/fuzz/regress (committed; run again after a format change).
build/san/fuzz/mkseeds: tests/fuzz/mkseeds.c $(FUZZ_HDRS) build/san/libpare.a
	@mkdir -p $(dir $@)
	@$(CC) $(filter-out -MMD -MP,$(CFLAGS_COMMON)) $(SAN) -o $@ $< build/san/libpare.a $(LDLIBS)

fuzz-seeds: build/san/fuzz/mkseeds
	build/san/fuzz/mkseeds tests/fuzz/regress
