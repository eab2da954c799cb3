/* fmap.h - a whole regular file mapped read-only (the model readers' input).
 * Room: model. May touch: core/err, libc, mmap. The mapping is private and read-only;
 * the file descriptor is closed before fmap_open returns. gguf.c's open does the same
 * by hand and could use this. */
#ifndef KVLM_MODEL_FMAP_H
#define KVLM_MODEL_FMAP_H

#include <stddef.h>
#include "kvlm.h"

/* Maps path into *base, *size bytes. KVLM_ERR_IO ("<path>: open: ...", not a regular
 * file, mmap), KVLM_ERR_FORMAT for an empty file ("<path>: offset 0: truncated: the
 * file is empty"). On failure *base is NULL and nothing stays open. */
kvlm_err fmap_open(const char *path, void **base, size_t *size, char *err, size_t errlen);
void fmap_close(void *base, size_t size);   /* base NULL is fine */

#endif
