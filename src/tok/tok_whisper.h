/* tok_whisper.h - Whisper's GPT-2 byte-level BPE as a CTranslate2 model directory
 * ships it: vocabulary.txt (one token per line: the id is the line number; GPT-2
 * byte-level strings, then <|...|> specials and the 1,501 timestamp tokens
 * <|0.00|> .. <|30.00|>) for decoding, and tokenizer.json (HF tokenizers: BPE
 * model with its merges, ByteLevel pre-tokenizer with the GPT-2 regex,
 * add_prefix_space false) for encoding a prompt.
 * Room: tok. May touch: core (errors), cJSON, PCRE2, libc.
 *
 * Decoding: ids >= eot (50256) are specials or timestamps and give no text unless
 * asked for; the others' vocabulary strings are joined and mapped back to bytes
 * through the inverse of GPT-2's bytes_to_unicode table (bytes 33-126, 161-172,
 * 174-255 map to themselves, the other 68 to U+0100 onward in order).
 * Encoding: the GPT-2 pre-tokenizer regex
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * splits the text, each piece's bytes are mapped through bytes_to_unicode and
 * merged by rank. Ids equal HF tokenizers' on every golden case.
 *
 * Files are hostile input: a bad or empty line, a token string that is not
 * valid byte-level text, a tokenizer.json without model.vocab / model.merges, a
 * vocabulary that disagrees with tokenizer.json on an id: KVLM_ERR_FORMAT with the
 * file and the problem (a file that cannot be opened: KVLM_ERR_IO). A
 * vocabulary.txt must end with a newline, and its timestamps, when it has any,
 * must run from <|0.00|> in 0.02 s steps to <|30.00|> on its last lines: both
 * catch a truncated file. Nothing prints.
 *
 * The tokenizer is immutable after load: every function taking a const tok_whisper
 * is safe to call from many threads at once. */
#ifndef KVLM_TOK_TOK_WHISPER_H
#define KVLM_TOK_TOK_WHISPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"

typedef struct tok_whisper tok_whisper;

/* Special ids as read from vocabulary.txt (by their strings); -1 when absent. */
typedef struct tok_whisper_specials {
    kvlm_token eot, sot, translate, transcribe, startoflm, startofprev, nocaptions, notimestamps;
    kvlm_token timestamp_begin;   /* <|0.00|> */
    kvlm_token timestamp_end;     /* the last timestamp, <|30.00|> */
    kvlm_token lang_en;           /* <|en|> */
} tok_whisper_specials;

/* dir holds vocabulary.txt and tokenizer.json. */
kvlm_err tok_whisper_load(const char *dir, tok_whisper **out, char *err, size_t errlen);
void tok_whisper_free(tok_whisper *t);   /* NULL is fine */

int64_t tok_whisper_n_vocab(const tok_whisper *t);   /* lines of vocabulary.txt */
const tok_whisper_specials *tok_whisper_get_specials(const tok_whisper *t);

/* The bytes of token id (byte-level decoded; specials and timestamps give their
 * <|...|> text only when render_special, else 0 bytes). Returns the byte count;
 * a return larger than cap means nothing was written; -1 for an invalid id. */
int64_t tok_whisper_token_bytes(const tok_whisper *t, kvlm_token id, bool render_special, char *buf, size_t cap);

/* The UTF-8 text of ids[0..n) without specials and timestamps (invalid UTF-8
 * replaced by U+FFFD), malloc'd and NUL-terminated into *out. */
kvlm_err tok_whisper_decode(const tok_whisper *t, const kvlm_token *ids, size_t n, char **out,
                            char *err, size_t errlen);

/* The time a timestamp token stands for: (id - timestamp_begin) * 0.02 s, so
 * <|0.00|> = 0.0 and <|30.00|> = 30.0; -1.0 for any other id. */
double tok_whisper_timestamp_seconds(const tok_whisper *t, kvlm_token id);

/* Encodes text[0..len) (no special tokens parsed). Writes at most cap ids and the
 * full count to *n_out; KVLM_ERR_INVALID if it exceeds cap. */
kvlm_err tok_whisper_encode(const tok_whisper *t, const char *text, size_t len, kvlm_token *out, size_t cap,
                            size_t *n_out, char *err, size_t errlen);

#endif
