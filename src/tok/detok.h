/* detok.h - streaming detokenization: token pieces in, complete UTF-8 out.
 * Room: tok. May touch: utf8proc. Knows nothing of vocabularies: the caller passes
 * each token's bytes (tokenizer_token_bytes).
 *
 * A token may end in the middle of a multi-byte character (byte-level BPE splits
 * emoji and CJK across tokens). detok_push emits every complete, valid character,
 * holds back an incomplete tail (at most 3 bytes, in d->pending) until the next
 * piece completes it, and replaces invalid bytes by U+FFFD, one per maximal
 * invalid subpart (the Unicode / WHATWG rule Python's errors="replace" follows).
 * Output is NUL-terminated when cap > 0 and truncated (never overrun) when it
 * does not fit: 3 * (n + 3) + 1 bytes always suffice. */
#ifndef KVLM_TOK_DETOK_H
#define KVLM_TOK_DETOK_H

#include <stddef.h>
#include "kvlm.h"

size_t detok_push(kvlm_detok *d, const char *piece, size_t n, char *out, size_t cap);
/* Emits a held-back incomplete tail as U+FFFD and resets d. */
size_t detok_flush(kvlm_detok *d, char *out, size_t cap);

#endif
