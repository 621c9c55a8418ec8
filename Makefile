# pare - build, test, bench.
#   make deps      install the Debian packages pare needs (as root)
#   make           $(B)/pare and $(B)/libpare.a (-O2)
#   make test      module tests and CLI tests under AddressSanitizer + UBSan
#   make bench     speed and memory benchmarks (minutes; not part of CI)
#   make install PREFIX=/usr/local

PREFIX   ?= /usr/local
ARCH     ?= native
B        ?= build
CC       ?= cc
PKGS     := libzip libcjson libxxhash openblas libpcre2-8 lapacke
DEB_PKGS := build-essential pkg-config libzip-dev libcjson-dev libxxhash-dev libopenblas-dev \
            libpcre2-dev liblapacke-dev python3

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN     := -Wall -Wextra -Wpedantic -Werror -Wno-unused-parameter -Wno-format-truncation
CFLAGS_COMMON := -std=c11 -D_DEFAULT_SOURCE -D_FILE_OFFSET_BITS=64 -g -march=$(ARCH) $(WARN) \
                 -I. $(PKG_CFLAGS) -MMD -MP
CFLAGS   ?= -O2
SAN      := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDLIBS   := $(PKG_LIBS) -lpthread -lm

MODULES  := core formats quant prune lora verify pipeline
LIB_SRC  := $(foreach m,$(MODULES),$(wildcard $(m)/*.c))
CMD_SRC  := $(wildcard cmd/*.c)
TEST_SRC := $(wildcard tests/test_*.c)

OBJ      := $(LIB_SRC:%.c=$(B)/obj/%.o)
CMD_OBJ  := $(CMD_SRC:%.c=$(B)/obj/%.o)
SOBJ     := $(LIB_SRC:%.c=$(B)/san/%.o)
SCMD_OBJ := $(CMD_SRC:%.c=$(B)/san/%.o)
TESTS    := $(TEST_SRC:tests/%.c=$(B)/san/tests/%)

.PHONY: all deps test bench install clean check-headers fixtures fuzz
all: $(B)/pare $(B)/libpare.a

deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "all build dependencies present"; fi

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(CFLAGS_COMMON) $(CFLAGS) -c $< -o $@

$(B)/san/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "CC (asan) $<"
	@$(CC) $(CFLAGS_COMMON) $(SAN) -c $< -o $@

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

test: check-headers $(TESTS) $(B)/san/pare $(B)/pare
	@PARE=$(B)/san/pare sh tests/run.sh $(TESTS)

bench: $(B)/pare
	sh bench/run.sh

fixtures:
	/usr/bin/python3 tests/fixtures/make_fixtures.py

install: $(B)/pare
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(B)/pare $(DESTDIR)$(PREFIX)/bin/pare

clean:
	rm -rf $(B)

-include $(OBJ:.o=.d) $(CMD_OBJ:.o=.d) $(SOBJ:.o=.d) $(SCMD_OBJ:.o=.d) $(TESTS:=.d)
-include tests/fuzz/fuzz.mk
.SECONDARY:
