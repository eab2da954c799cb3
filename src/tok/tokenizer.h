/* tokenizer.h - text <-> token ids for the two vocabularies GGUF files carry.
 * Room: tok. May touch: core (errors), model/gguf (read-only, at init only),
 * pcre2-8. Knows nothing of weights, contexts or HTTP.
 *
 *   tokenizer.ggml.model = "gpt2"   byte-level BPE (GPT-2 style): a pre-tokenizer
 *                                   regex chosen by tokenizer.ggml.pre, then merges
 *                                   by rank (tokenizer_bpe.c)
 *   tokenizer.ggml.model = "llama"  SentencePiece BPE: ' ' -> U+2581, merges by
 *                                   highest score, <0xXX> byte fallback (tokenizer_spm.c);
 *                                   a leading space only if tokenizer.ggml.add_space_prefix
 *                                   (default true; false for Gemma 3)
 *
 * Ownership: tokenizer_init_gguf COPIES everything it needs (token texts, types,
 * scores, merges); the gguf_file may be closed right after it returns.
 * A tokenizer is immutable after init: every function taking a const tokenizer is
 * safe to call from many threads at once (per-call scratch and pcre2 match data).
 *
 * Special tokens (the llama.cpp rules, which the golden data follows): control
 * (token_type 3) and unknown (2) token texts are matched in the input only with
 * parse_special; user-defined tokens (4) are always matched, as added tokens are.
 * Matching goes longest text first. BPE/SPM never produce those ids otherwise.
 * Tokens llama.cpp recognises by their text (EOT/EOG/FIM names such as <|im_end|>,
 * <end_of_turn>, </s>) are control tokens whatever their token_type, as llama.cpp 0.3.36
 * makes them: so Gemma 3's user-defined "</s>" (an HTML strikethrough end) is matched
 * only with parse_special and ends generation, exactly as in llama.cpp. Pieces: normal
 * tokens decoded (SPM: U+2581 -> ' '), byte tokens one byte, control, unknown and
 * user-defined tokens their text as it is (Gemma's "\n\n", "  ", "<table>" ...).
 * Invalid UTF-8 never fails: in the byte-level model each byte maps through the
 * byte table, so decode(encode(x)) == x for every x when parse_special is off
 * (llama.cpp instead replaces invalid bytes by U+FFFD before tokenizing). */
#ifndef KVLM_TOK_TOKENIZER_H
#define KVLM_TOK_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"
#include "model/gguf.h"

typedef struct tokenizer tokenizer;

/* Builds a tokenizer from the tokenizer.* keys of f (no tensors needed).
 * KVLM_ERR_FORMAT for a missing or mis-typed required key (model, tokens, and
 * merges for gpt2), or token_type/scores of the wrong length or type;
 * KVLM_ERR_UNSUPPORTED for a tokenizer.ggml.model other than gpt2/llama;
 * KVLM_ERR_NOMEM. An unknown tokenizer.ggml.pre falls back to the GPT-2 regex. */
kvlm_err tokenizer_init_gguf(const gguf_file *f, tokenizer **out, char *err, size_t errlen);
void     tokenizer_free(tokenizer *t);   /* NULL is fine */

/* As kvlm_tokenize: writes min(count, cap) ids to out, the full count to *n_out,
 * KVLM_ERR_INVALID when count > cap. BOS is prepended only if add_bos and the
 * model asks for it (tokenizer.ggml.add_bos_token). out may be NULL when cap == 0
 * (a counting call). */
kvlm_err tokenizer_encode(const tokenizer *t, const char *text, size_t len, bool add_bos,
                          bool parse_special, kvlm_token *out, size_t cap, size_t *n_out,
                          char *err, size_t errlen);

/* As kvlm_token_to_bytes: the piece of tok (not NUL-terminated). Control and
 * unknown tokens give 0 bytes unless render_special. Returns the byte count;
 * a count larger than cap means nothing was written; -1 for an id out of range. */
int64_t tokenizer_token_bytes(const tokenizer *t, kvlm_token tok, bool render_special,
                              char *buf, size_t cap);

/* End of generation: EOS, EOT and the tokens llama.cpp 0.3.36 treats so (<|im_end|>,
 * <|endoftext|>, <|eot_id|>, <end_of_turn>, </s>, FIM repo/sep/pad ...; Gemma 3: 1, 106, 212). */
bool tokenizer_is_eog(const tokenizer *t, kvlm_token tok);

kvlm_token tokenizer_bos(const tokenizer *t);   /* -1 if none */
kvlm_token tokenizer_eos(const tokenizer *t);   /* -1 if none */
/* tokenizer.ggml.eot_token_id, else the first of <|im_end|>, <|eot_id|>,
 * <end_of_turn> in the vocabulary, else -1. (llama.cpp picks by hash order among
 * more names: it says <|endoftext|> for SmolLM2; both are end-of-generation.) */
kvlm_token tokenizer_eot(const tokenizer *t);
int64_t    tokenizer_n_vocab(const tokenizer *t);

/* Exact token text (as stored in the vocabulary, e.g. "<|im_start|>") -> id; -1 if none. */
kvlm_token tokenizer_find(const tokenizer *t, const char *text);

#endif
