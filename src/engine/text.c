/* text.c - the public text functions of include/kvlm.h: tokenize, token bytes,
 * streaming detokenization, end-of-generation test, chat rendering.
 * Room: engine. Thin: the work is in tok/. */
#include "core/err.h"
#include "model/model.h"
#include "tok/chat.h"
#include "tok/detok.h"
#include "tok/tokenizer.h"

kvlm_err kvlm_tokenize(const kvlm_model *m, const char *text, size_t len, bool add_bos,
                       bool parse_special, kvlm_token *out, size_t cap, size_t *n_out,
                       char *err, size_t errlen)
{
    return tokenizer_encode(m->tok, text, len, add_bos, parse_special, out, cap, n_out, err, errlen);
}

int64_t kvlm_token_to_bytes(const kvlm_model *m, kvlm_token tok, bool render_special, char *buf, size_t cap)
{
    return tokenizer_token_bytes(m->tok, tok, render_special, buf, cap);
}

bool kvlm_token_is_eog(const kvlm_model *m, kvlm_token tok) { return tokenizer_is_eog(m->tok, tok); }

size_t kvlm_detok_push(kvlm_detok *d, const kvlm_model *m, kvlm_token tok, char *out, size_t cap)
{
    char piece[256];
    int64_t n = tokenizer_token_bytes(m->tok, tok, false, piece, sizeof piece);
    if (n < 0 || (size_t)n > sizeof piece) n = 0;   /* invalid id or absurdly long piece: nothing */
    return detok_push(d, piece, (size_t)n, out, cap);
}

size_t kvlm_detok_flush(kvlm_detok *d, char *out, size_t cap) { return detok_flush(d, out, cap); }

kvlm_err kvlm_chat_render(const kvlm_model *m, const kvlm_chat_msg *msgs, size_t n_msgs,
                          bool add_assistant, char **out, char *err, size_t errlen)
{
    return chat_render(m->chat_template, m->arch, msgs, n_msgs, add_assistant, out, err, errlen);
}
