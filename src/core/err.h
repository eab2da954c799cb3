/* err.h - error codes and the caller-supplied error buffer.
 * Room: core. May touch: libc only.
 * Convention: a function that can fail takes (char *err, size_t errlen) last,
 * writes one human-readable line there on failure and returns a kvlm_err.
 * err may be NULL (the message is dropped). Nothing here prints. */
#ifndef KVLM_CORE_ERR_H
#define KVLM_CORE_ERR_H

#include <stddef.h>
#include "kvlm.h"   /* kvlm_err */

/* Writes the formatted message into err[0..errlen) (always NUL-terminated when
 * errlen > 0) and returns code, so callers can write `return err_set(...)`. */
kvlm_err err_set(char *err, size_t errlen, kvlm_err code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Prefixes an existing message in err with "prefix: " (for adding context such
 * as a file name on the way up). Returns code. */
kvlm_err err_prefix(char *err, size_t errlen, kvlm_err code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
