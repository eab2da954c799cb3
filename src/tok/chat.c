/* chat.c - see chat.h. Room: tok. */
#include "tok/chat.h"

#include <stdlib.h>
#include <string.h>
#include "core/err.h"

typedef struct strbuf { char *p; size_t n, cap; bool oom; } strbuf;

static void sb_put(strbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) { b->oom = true; return; }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(strbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

typedef enum chat_family { CHAT_CHATML, CHAT_LLAMA3, CHAT_OTHER } chat_family;

static chat_family family_of(const char *tmpl)
{
    if (!tmpl || !*tmpl || strstr(tmpl, "<|im_start|>")) return CHAT_CHATML;
    if (strstr(tmpl, "<|start_header_id|>")) return CHAT_LLAMA3;
    return CHAT_OTHER;
}

/* The literal default system message of a ChatML template into b (unescaping
 * "\n" written as two characters); false when there is none. */
static bool default_system(const char *tmpl, strbuf *b)
{
    static const char mark[] = "<|im_start|>system";
    const char *p = tmpl ? strstr(tmpl, mark) : NULL;
    if (!p) return false;
    p += sizeof mark - 1;
    if (*p == '\n') p++;
    else if (p[0] == '\\' && p[1] == 'n') p += 2;
    else return false;
    const char *end = strstr(p, "<|im_end|>");
    if (!end || end == p) return false;
    for (const char *q = p; q < end; q++)
        if (*q == '{' || *q == '}' || *q == '\'' || *q == '"') return false;   /* templated, not literal */
    for (const char *q = p; q < end; q++) {
        if (q[0] == '\\' && q + 1 < end && q[1] == 'n') { sb_put(b, "\n", 1); q++; }
        else sb_put(b, q, 1);
    }
    return true;
}

static bool role_ok(const char *r)
{
    return r && (!strcmp(r, "system") || !strcmp(r, "user") || !strcmp(r, "assistant") || !strcmp(r, "tool"));
}

/* A template family as the strings around each message. */
typedef struct chat_fmt {
    const char *begin;       /* once, before everything */
    const char *role_pre, *role_post, *msg_post;
    const char *gen;         /* the opening of the assistant's turn */
} chat_fmt;

static const chat_fmt FMT_CHATML = { "", "<|im_start|>", "\n", "<|im_end|>\n", "<|im_start|>assistant\n" };
static const chat_fmt FMT_LLAMA3 = { "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>\n\n",
                                     "<|eot_id|>", "<|start_header_id|>assistant<|end_header_id|>\n\n" };

static void render_msg(const chat_fmt *f, strbuf *b, const char *role, const char *content, size_t n)
{
    sb_str(b, f->role_pre);
    sb_str(b, role);
    sb_str(b, f->role_post);
    sb_put(b, content, n);
    sb_str(b, f->msg_post);
}

static void render(const chat_fmt *f, const char *tmpl, const kvlm_chat_msg *msgs, size_t n, bool add_assistant,
                   strbuf *b)
{
    sb_str(b, f->begin);
    strbuf sys = { 0 };
    if (f == &FMT_CHATML && (n == 0 || strcmp(msgs[0].role, "system") != 0) && default_system(tmpl, &sys))
        render_msg(f, b, "system", sys.p, sys.n);
    b->oom |= sys.oom;
    free(sys.p);
    for (size_t i = 0; i < n; i++) render_msg(f, b, msgs[i].role, msgs[i].content, strlen(msgs[i].content));
    if (add_assistant) sb_str(b, f->gen);
}

kvlm_err chat_render(const char *tmpl, const kvlm_chat_msg *msgs, size_t n_msgs, bool add_assistant,
                     char **out, char *err, size_t errlen)
{
    *out = NULL;
    if (n_msgs && !msgs) return err_set(err, errlen, KVLM_ERR_INVALID, "chat: NULL messages");
    for (size_t i = 0; i < n_msgs; i++) {
        if (!role_ok(msgs[i].role))
            return err_set(err, errlen, KVLM_ERR_INVALID, "chat: message %zu: role must be system, user, assistant or tool", i);
        if (!msgs[i].content) return err_set(err, errlen, KVLM_ERR_INVALID, "chat: message %zu: NULL content", i);
    }
    strbuf b = { 0 };
    switch (family_of(tmpl)) {
    case CHAT_CHATML: render(&FMT_CHATML, tmpl, msgs, n_msgs, add_assistant, &b); break;
    case CHAT_LLAMA3: render(&FMT_LLAMA3, tmpl, msgs, n_msgs, add_assistant, &b); break;
    default:
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED,
                       "chat: the model's chat template is not a supported family (ChatML, Llama 3)");
    }
    sb_put(&b, "", 0);   /* an empty conversation still yields "" */
    if (b.oom) { free(b.p); return err_set(err, errlen, KVLM_ERR_NOMEM, "chat: out of memory"); }
    *out = b.p;
    return KVLM_OK;
}
