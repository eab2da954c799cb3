/* testtok.h - helpers of the tokenizer tests (tests/tok): golden files store bytes as hex,
 * and every token's piece as one hash, the way the reference scripts in tests/ref write them. */
#ifndef KVLM_TESTTOK_H
#define KVLM_TESTTOK_H

#include <stdbool.h>
#include <stddef.h>
#include <cJSON.h>
#include "tok/tokenizer.h"

/* hex -> bytes into out (at least strlen(hex) / 2 bytes); returns the byte count */
size_t test_hex_decode(const char *hex, char *out);

/* FNV-1a 64 over, for every id, u32le(len) + its piece (rendered with special or not), as
 * "%016llx" into hex[17] (tests/ref/gen_tok_golden.py's pieces_fnv1a64_*). false if a
 * piece is longer than 512 bytes or an id has none. */
bool test_tok_pieces_hash(const tokenizer *t, bool special, char hex[17]);

/* true if t's end-of-generation set is exactly the ids of eog (a JSON array) */
bool test_tok_eog_equals(const tokenizer *t, const cJSON *eog);

#endif
