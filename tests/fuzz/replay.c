/* tests/fuzz/replay.c - runs a fuzz target over saved inputs, without libFuzzer.
 *
 *   replay_NAME PATH...    every file of each folder PATH (sorted by name), or PATH itself
 *
 * Linked (gcc, ASan + UBSan, build/san/libpare.a) with one tests/fuzz/fuzz_NAME.c, it feeds
 * each input to LLVMFuzzerTestOneInput, as libFuzzer would, so that `make test` replays the
 * committed seeds and crash reproducers of tests/fuzz/regress/NAME/. A crash or a sanitizer
 * report aborts with the input's name on stderr; otherwise prints how many inputs ran and
 * exits 0. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* As in the module tests: a reader that trusted a count from a file and allocated more than
 * any input here justifies is a bug, not an out-of-memory condition. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "max_allocation_size_mb=256"; }

/* Inputs are small (tests/fuzz/regress holds files under 64 KB); this bounds a stray path. */
#define REPLAY_MAX_INPUT (16u << 20)

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    uint8_t *buf = malloc(REPLAY_MAX_INPUT);
    size_t n = buf ? fread(buf, 1, REPLAY_MAX_INPUT, f) : 0;
    fclose(f);
    if (!buf) return -1;
    /* Tell which input is running, so that a sanitizer report that follows names it. */
    fprintf(stderr, "replay %s (%zu bytes)\n", path, n);
    /* A copy of exactly n bytes, so that ASan catches reads past the input's end. */
    uint8_t *in = malloc(n ? n : 1);
    if (!in) {
        free(buf);
        return -1;
    }
    memcpy(in, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(in, n);
    free(in);
    return 0;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int run_dir(const char *dir, size_t *count) {
    DIR *d = opendir(dir);
    if (!d) {
        perror(dir);
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn) abort();
            names = nn;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        names[n] = malloc(len);
        if (!names[n]) abort();
        snprintf(names[n++], len, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_names);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (rc == 0 && run_file(names[i]) != 0) rc = -1;
        if (rc == 0) (*count)++;
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR_OR_FILE...\n", argv[0]);
        return 1;
    }
    size_t count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            return 1;
        }
        int rc = S_ISDIR(st.st_mode) ? run_dir(argv[i], &count) : run_file(argv[i]);
        if (rc != 0) return 1;
        if (!S_ISDIR(st.st_mode)) count++;
    }
    printf("%s: %zu inputs replayed\n", argv[0], count);
    return 0;
}
