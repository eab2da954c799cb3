/* cli_file.c - files the command line reads as hostile input or writes for the
 * user: the text of `run -f FILE`, and the session file of `chat --session FILE`.
 * Room: cli; uses include/kvlm.h and cJSON. Prints its errors to stderr.
 *
 * A session file, version 1 (cJSON):
 *   {"version": 1, "model": "<the model file's base name>", "system": "...",
 *    "messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}, ...]}
 * "system" is absent when the chat has none (the template's default system message is
 * then used, which a "" system would not). messages alternate user, assistant,
 * starting with user: the file is written after each whole turn. It is written to a
 * temporary file beside it, fsynced, then renamed over it and the directory fsynced,
 * so a crash leaves the old file or the new one, never part of one.
 * Loading treats the file as hostile: a regular file of at most CLI_SESSION_MAX_BYTES,
 * JSON of exactly that shape, strings of valid UTF-8. Anything else is refused with the
 * reason and the file is left as it is (the chat does not start, so it never
 * overwrites a file it could not read). */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cJSON.h>

bool cli_file_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        unsigned c = *p;
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || (size_t)(end - p) < len) return false;
        uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
        for (size_t i = 1; i < len; i++) {
            if ((p[i] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (p[i] & 0x3F);
        }
        static const uint32_t min_cp[5] = { 0, 0, 0x80, 0x800, 0x10000 };
        if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;  /* overlong, surrogate */
        p += len;
    }
    return true;
}

/* The whole of path (NUL-terminated, *len bytes) if it has at most max bytes; NULL
 * after printing why (why_max: what a larger file would be). regular: refuse
 * anything but a regular file (a FIFO would block). */
static char *read_bounded(const char *path, size_t max, const char *why_max, bool regular, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "kvlm: cannot read %s: %s\n", path, strerror(errno));
        if (fd >= 0) close(fd);
        return NULL;
    }
    if (S_ISDIR(st.st_mode) || (regular && !S_ISREG(st.st_mode))) {
        fprintf(stderr, "kvlm: cannot read %s: not a regular file\n", path);
        close(fd);
        return NULL;
    }
    /* read up to max + 1 bytes: one beyond max says the file is too large */
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    bool failed = false;
    while (buf && !failed && n <= max) {
        if (n + 1 == cap) {                               /* keep room for the NUL */
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
        size_t room = cap - 1 - n, want = room < max + 1 - n ? room : max + 1 - n;
        ssize_t r = read(fd, buf + n, want);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) fprintf(stderr, "kvlm: cannot read %s: %s\n", path, strerror(errno));
        if (r <= 0) { failed = r < 0; break; }
        n += (size_t)r;
    }
    close(fd);
    if (!buf) fprintf(stderr, "kvlm: %s: out of memory\n", path);
    else if (n > max) fprintf(stderr, "kvlm: %s is larger than %zu bytes: %s\n", path, max, why_max);
    if (!buf || failed || n > max) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

char *cli_file_read_text(const char *path, size_t max, const char *why_max, size_t *len)
{
    char *t = read_bounded(path, max, why_max, false, len);
    if (!t) return NULL;
    const char *nul = memchr(t, 0, *len);
    if (nul) {
        fprintf(stderr, "kvlm: %s holds a NUL byte (at offset %zu): not a text file\n", path, (size_t)(nul - t));
    } else if (!cli_file_utf8_valid(t, *len)) {
        fprintf(stderr, "kvlm: %s is not valid UTF-8 text\n", path);
    } else {
        return t;
    }
    free(t);
    return NULL;
}

void cli_file_session_free(cli_session *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n_msgs; i++) free((char *)s->msgs[i].content);
    free(s->msgs);
    *s = (cli_session){ 0 };
}

int cli_file_session_add(cli_session *s, const char *role, const char *content)
{
    if (s->n_msgs == s->cap_msgs) {
        size_t nc = s->cap_msgs ? s->cap_msgs * 2 : 8;
        kvlm_chat_msg *nm = realloc(s->msgs, nc * sizeof *nm);
        if (!nm) return -1;
        s->msgs = nm;
        s->cap_msgs = nc;
    }
    char *c = strdup(content);
    if (!c) return -1;
    s->msgs[s->n_msgs++] = (kvlm_chat_msg){ role, c };
    return 0;
}

/* A string member's value that is valid UTF-8, or NULL (with *why set). */
static const char *json_text(const cJSON *obj, const char *key, const char **why)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v) || !v->valuestring) { *why = "is not a string"; return NULL; }
    if (!cli_file_utf8_valid(v->valuestring, strlen(v->valuestring))) { *why = "is not valid UTF-8"; return NULL; }
    return v->valuestring;
}

/* Fills s from the parsed document j; a message for the user into why on failure.
 * *made_with: the document's "model" (valid while j lives). */
static int session_from_json(const cJSON *j, cli_session *s, const char **made_with, char *why, size_t cap)
{
    const char *bad = NULL;
    if (!cJSON_IsObject(j)) { snprintf(why, cap, "not a JSON object"); return -1; }
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(j, "version");
    if (!cJSON_IsNumber(ver) || ver->valuedouble != 1) {
        snprintf(why, cap, "\"version\" is not 1 (this kvlm reads session files of version 1)");
        return -1;
    }
    if (!(*made_with = json_text(j, "model", &bad))) { snprintf(why, cap, "\"model\" %s", bad); return -1; }
    const cJSON *sys = cJSON_GetObjectItemCaseSensitive(j, "system");
    if (sys && !cJSON_IsNull(sys)) {
        const char *t = json_text(j, "system", &bad);
        if (!t) { snprintf(why, cap, "\"system\" %s", bad); return -1; }
        if (cli_file_session_add(s, "system", t)) goto nomem;
        s->has_system = true;
    }
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "messages"), *msg;
    if (!cJSON_IsArray(list)) { snprintf(why, cap, "\"messages\" is not an array"); return -1; }
    size_t i = 0;
    cJSON_ArrayForEach(msg, list) {
        const char *want = i % 2 ? "assistant" : "user";
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        const char *content = cJSON_IsObject(msg) ? json_text(msg, "content", &bad) : NULL;
        if (!cJSON_IsObject(msg)) bad = "is not an object";
        if (!content) { snprintf(why, cap, "message %zu %s%s", i, cJSON_IsObject(msg) ? "content " : "", bad); return -1; }
        if (!cJSON_IsString(role) || strcmp(role->valuestring, want)) {
            snprintf(why, cap, "message %zu: the role is not \"%s\" (turns alternate user, assistant)", i, want);
            return -1;
        }
        if (cli_file_session_add(s, i % 2 ? "assistant" : "user", content)) goto nomem;
        i++;
    }
    if (i % 2) { snprintf(why, cap, "the last message is a user's with no assistant reply"); return -1; }
    s->n_turns = i / 2;
    return 0;
nomem:
    snprintf(why, cap, "out of memory");
    return -1;
}

int cli_file_session_load(const char *path, const char *model, cli_session *s)
{
    *s = (cli_session){ 0 };
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT) return 0;
    size_t len;
    char *text = read_bounded(path, CLI_SESSION_MAX_BYTES, "more than a session file may hold", true, &len);
    if (!text) return -1;
    char why[256];
    const char *end = NULL;
    bool nul = memchr(text, 0, len) != NULL;             /* cJSON would stop there */
    cJSON *j = nul ? NULL : cJSON_ParseWithOpts(text, &end, true);
    if (nul) snprintf(why, sizeof why, "it holds a NUL byte");
    else if (!j) snprintf(why, sizeof why, "not valid JSON (at byte %zu)", end ? (size_t)(end - text) : (size_t)0);
    const char *made_with = NULL;
    int rc = j ? session_from_json(j, s, &made_with, why, sizeof why) : -1;
    if (!rc && strcmp(made_with, model)) {
        char shown[128];                                  /* no terminal control bytes from the file */
        size_t k = 0;
        for (const char *c = made_with; *c && k + 1 < sizeof shown; c++)
            shown[k++] = (unsigned char)*c < 0x20 || *c == 0x7f ? '?' : *c;
        shown[k] = '\0';
        fprintf(stderr, "kvlm chat: warning: %s was made with model %s, this chat runs %s; going on\n", path,
                shown, model);
    }
    cJSON_Delete(j);
    free(text);
    if (rc) {
        fprintf(stderr, "kvlm chat: cannot resume %s: %s; the file is left as it is\n", path, why);
        cli_file_session_free(s);
        return -1;
    }
    return 1;
}

/* The document of a session: version, model, system (if any), messages. */
static cJSON *session_to_json(const char *model, const cli_session *s)
{
    cJSON *j = cJSON_CreateObject(), *list = NULL;
    bool ok = j && cJSON_AddNumberToObject(j, "version", 1) && cJSON_AddStringToObject(j, "model", model);
    size_t i = 0;
    if (ok && s->has_system) ok = cJSON_AddStringToObject(j, "system", s->msgs[i++].content) != NULL;
    ok = ok && (list = cJSON_AddArrayToObject(j, "messages"));
    for (; ok && i < s->n_msgs; i++) {
        cJSON *m = cJSON_CreateObject();
        if (!m || !cJSON_AddItemToArray(list, m)) {   /* once added, j owns it */
            cJSON_Delete(m);
            ok = false;
            break;
        }
        ok = cJSON_AddStringToObject(m, "role", s->msgs[i].role) &&
             cJSON_AddStringToObject(m, "content", s->msgs[i].content);
    }
    if (!ok) { cJSON_Delete(j); return NULL; }
    return j;
}

/* Writes all of buf to fd; 0 or -1 (errno set). */
static int write_all(int fd, const char *buf, size_t n)
{
    while (n) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

int cli_file_session_save(const char *path, const char *model, const cli_session *s)
{
    cJSON *j = session_to_json(model, s);
    char *doc = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16), *dir = strdup(path);
    int fd = -1, rc = -1;
    if (!doc || !tmp || !dir) { fprintf(stderr, "kvlm chat: saving %s: out of memory\n", path); goto out; }
    snprintf(tmp, plen + 16, "%s.tmp-XXXXXX", path);   /* beside it: rename stays on one file system */
    if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
        fprintf(stderr, "kvlm chat: cannot save %s: %s: %s\n", path, tmp, strerror(errno));
        goto out;
    }
    size_t dlen = strlen(doc);
    doc[dlen] = '\n';                                   /* the NUL becomes the final newline */
    if (write_all(fd, doc, dlen + 1) || fsync(fd) || close(fd)) {
        fprintf(stderr, "kvlm chat: cannot save %s: %s\n", path, strerror(errno));
        fd = -1;
        unlink(tmp);
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        fprintf(stderr, "kvlm chat: cannot save %s: rename: %s\n", path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);   /* the rename itself, durable */
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    rc = 0;
out:
    if (fd >= 0) { close(fd); unlink(tmp); }
    free(doc);
    free(tmp);
    free(dir);
    return rc;
}
