/* chat.c - see chat.h. Room: tok. */
#include "tok/chat.h"

#include <stdint.h>
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

typedef enum chat_family { CHAT_CHATML, CHAT_LLAMA3, CHAT_GEMMA, CHAT_OTHER } chat_family;

static bool arch_is_gemma(const char *arch)
{
    return arch && (!strcmp(arch, "gemma") || !strcmp(arch, "gemma2") || !strcmp(arch, "gemma3"));
}

static chat_family family_of(const char *tmpl, const char *arch)
{
    if (!tmpl || !*tmpl) return arch_is_gemma(arch) ? CHAT_GEMMA : CHAT_CHATML;
    if (strstr(tmpl, "<|im_start|>")) return CHAT_CHATML;
    if (strstr(tmpl, "<|start_header_id|>")) return CHAT_LLAMA3;
    if (strstr(tmpl, "<start_of_turn>")) return CHAT_GEMMA;
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

/* ---- Gemma ------------------------------------------------------------------------ */

/* The code point of s[0..n) when it is exactly one well-formed UTF-8 character, else -1. */
static int32_t utf8_one(const unsigned char *s, size_t n)
{
    static const uint32_t min_cp[5] = { 0, 0, 0x80, 0x800, 0x10000 };
    size_t need = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (need != n) return -1;
    uint32_t cp = need == 1 ? s[0] : s[0] & (0x7f >> need);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return -1;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return -1;
    return (int32_t)cp;
}

/* Python's str.isspace() (what Jinja's trim strips) */
static bool py_space(int32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* s without leading and trailing whitespace: [*off, *off + *len) */
static void trim_span(const char *s, size_t *off, size_t *len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t a = 0, b = strlen(s);
    while (a < b) {   /* the first character of u[a..b) */
        size_t k = 1;
        while (k < 4 && a + k < b && utf8_one(u + a, k) < 0) k++;
        if (!py_space(utf8_one(u + a, k))) break;
        a += k;
    }
    while (a < b) {   /* the last character of u[a..b) */
        size_t k = 1;
        while (k < 4 && b - a > k && utf8_one(u + b - k, k) < 0) k++;
        if (!py_space(utf8_one(u + b - k, k))) break;
        b -= k;
    }
    *off = a;
    *len = b - a;
}

static void gemma_turn(strbuf *b, const char *role, const char *prefix, size_t n_prefix, const char *content)
{
    size_t off, len;
    trim_span(content, &off, &len);
    sb_str(b, "<start_of_turn>");
    sb_str(b, role);
    sb_str(b, "\n");
    if (n_prefix) sb_put(b, prefix, n_prefix);
    sb_put(b, content + off, len);
    sb_str(b, "<end_of_turn>\n");
}

/* system text waits in sys ("text\n\n" per message) for the next turn that is not the model's */
static void render_gemma(const kvlm_chat_msg *msgs, size_t n, bool add_assistant, strbuf *b)
{
    strbuf sys = { 0 };
    for (size_t i = 0; i < n; i++) {
        const char *role = msgs[i].role;
        if (!strcmp(role, "system")) {
            sb_str(&sys, msgs[i].content);
            sb_str(&sys, "\n\n");
            continue;
        }
        bool model = !strcmp(role, "assistant");
        gemma_turn(b, model ? "model" : role, sys.p, model ? 0 : sys.n, msgs[i].content);
        if (!model) sys.n = 0;
    }
    if (sys.n >= 2 && !sys.oom) {   /* no user turn after it: the system text is one */
        sys.p[sys.n - 2] = '\0';
        gemma_turn(b, "user", NULL, 0, sys.p);
    }
    b->oom |= sys.oom;
    free(sys.p);
    if (add_assistant) sb_str(b, "<start_of_turn>model\n");
}

kvlm_err chat_render(const char *tmpl, const char *arch, const kvlm_chat_msg *msgs, size_t n_msgs,
                     bool add_assistant, char **out, char *err, size_t errlen)
{
    *out = NULL;
    if (n_msgs && !msgs) return err_set(err, errlen, KVLM_ERR_INVALID, "chat: NULL messages");
    for (size_t i = 0; i < n_msgs; i++) {
        if (!role_ok(msgs[i].role))
            return err_set(err, errlen, KVLM_ERR_INVALID, "chat: message %zu: role must be system, user, assistant or tool", i);
        if (!msgs[i].content) return err_set(err, errlen, KVLM_ERR_INVALID, "chat: message %zu: NULL content", i);
    }
    strbuf b = { 0 };
    switch (family_of(tmpl, arch)) {
    case CHAT_CHATML: render(&FMT_CHATML, tmpl, msgs, n_msgs, add_assistant, &b); break;
    case CHAT_LLAMA3: render(&FMT_LLAMA3, tmpl, msgs, n_msgs, add_assistant, &b); break;
    case CHAT_GEMMA: render_gemma(msgs, n_msgs, add_assistant, &b); break;
    default:
        return err_set(err, errlen, KVLM_ERR_UNSUPPORTED,
                       "chat: the model's chat template is not a supported family (ChatML, Llama 3, Gemma)");
    }
    sb_put(&b, "", 0);   /* an empty conversation still yields "" */
    if (b.oom) { free(b.p); return err_set(err, errlen, KVLM_ERR_NOMEM, "chat: out of memory"); }
    *out = b.p;
    return KVLM_OK;
}
