/* core/error.c - filling pare_err. */
#include "core.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

pare_status pare_err_vset_at(pare_err *err, const char *src_file, int src_line, pare_status code,
                             const char *fmt, va_list ap) {
    if (!err) return code;
    err->code = code;
    err->sys_errno = 0;
    err->src_file = src_file;
    err->src_line = src_line;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    /* Messages are one line: a newline from a file name or a value would break that. */
    for (char *p = err->msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return code;
}

pare_status pare_err_set_at(pare_err *err, const char *src_file, int src_line, pare_status code,
                            const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pare_err_vset_at(err, src_file, src_line, code, fmt, ap);
    va_end(ap);
    return code;
}

pare_status pare_err_errno_at(pare_err *err, const char *src_file, int src_line, const char *fmt, ...) {
    int e = errno;
    if (!err) return PARE_EIO;
    va_list ap;
    va_start(ap, fmt);
    pare_err_vset_at(err, src_file, src_line, PARE_EIO, fmt, ap);
    va_end(ap);
    size_t n = strlen(err->msg);
    snprintf(err->msg + n, sizeof err->msg - n, ": %s", strerror(e));
    err->sys_errno = e;
    if (e == ENOMEM) err->code = PARE_ENOMEM;
    return err->code;
}

void pare_err_prefix(pare_err *err, const char *fmt, ...) {
    if (!err) return;
    char pre[PARE_ERR_MSG_MAX], old[PARE_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* Build by hand: snprintf of two full buffers into one trips -Wformat-truncation. */
    size_t a = strnlen(pre, sizeof pre - 1), b = strnlen(old, sizeof old - 1), k = 0;
    size_t cap = sizeof err->msg - 1;
    memcpy(err->msg, pre, a < cap ? a : cap);
    k = a < cap ? a : cap;
    if (k + 2 <= cap) { memcpy(err->msg + k, ": ", 2); k += 2; }
    size_t rest = cap - k;
    memcpy(err->msg + k, old, b < rest ? b : rest);
    k += b < rest ? b : rest;
    err->msg[k] = 0;
}

void pare_err_clear(pare_err *err) {
    if (!err) return;
    memset(err, 0, sizeof *err);
}
