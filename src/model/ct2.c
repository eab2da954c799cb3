/* ct2.c - the CTranslate2 model.bin reader (see ct2.h for the layout and the
 * invariants on success).
 * Room: model. May touch: core/err, kern/quant (fp16/bf16 widening), model/fmap, libc.
 *
 * One forward pass of a cursor (cur) over the bytes, then the indexes:
 *
 *   cur.pos ──► version | [spec | revision] | n_vars | var[0] ... var[n-1] | [n_alias | alias...] | EOF
 *                                                     │
 *                  var = str name | u8 rank | u32 dims[rank] | dtype+bytes | data (unaligned)
 *
 *   sorted[]        indexes into vars[], by strcmp of the names  (duplicates rejected)
 *   alias_sorted[]  indexes into aliases[], by alias name        (duplicates rejected)
 *   alias_var[a]    the variable alias a finally names (chains followed, cycles rejected)
 *
 * Hostile-input rules:
 *   - every read checks the bytes left first (cur_uint, cur_str); nothing is read past size;
 *   - counts are checked against the least bytes their items need before anything is
 *     allocated, so allocations stay a small multiple of the file size;
 *   - products and sums use __builtin_*_overflow;
 *   - one cleanup path: ct2_close() on the partly built file (calloc'd).
 * Messages: "<file>: offset <byte>: <problem>", the offset being where the item starts. */
#include "model/ct2.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "kern/quant.h"
#include "model/fmap.h"

enum {
    MIN_STR_BYTES = 2 + 2,                   /* u16 length, one char, the NUL */
    MIN_VAR_BYTES = MIN_STR_BYTES + 1 + 1 + 4 + 1,   /* name, rank, dtype, bytes, one byte */
    MIN_ALIAS_BYTES = MIN_STR_BYTES + 3,     /* a name, and a target of at least its NUL */
    QUOTE_MAX = 48,                          /* chars of a name quoted in messages */
};

/* ---- dtypes ------------------------------------------------------------------------------ */
size_t ct2_dtype_size(ct2_dtype t)
{
    switch (t) {
    case CT2_F32: case CT2_I32: return 4;
    case CT2_I16: case CT2_F16: case CT2_BF16: return 2;
    case CT2_I8: return 1;
    default: return 0;
    }
}

const char *ct2_dtype_name(ct2_dtype t)
{
    switch (t) {
    case CT2_F32: return "float32";
    case CT2_I8: return "int8";
    case CT2_I16: return "int16";
    case CT2_I32: return "int32";
    case CT2_F16: return "float16";
    case CT2_BF16: return "bfloat16";
    default: return "unknown";
    }
}

/* ---- the cursor ------------------------------------------------------------------------------ */
typedef struct cur {
    const uint8_t *base;
    uint64_t size, pos;
    const char *file;
    char *err;
    size_t errlen;
} cur;

__attribute__((format(printf, 3, 4)))
static kvlm_err bad(const cur *c, uint64_t at, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set(c->err, c->errlen, KVLM_ERR_FORMAT, "%s: offset %llu: %s", c->file,
                   (unsigned long long)at, msg);
}

/* A printable rendering of a file string (at most QUOTE_MAX chars, others as \xNN). */
typedef struct quoted { char s[QUOTE_MAX * 4 + 4]; } quoted;
static const char *quote(const char *s, quoted *q)
{
    size_t o = 0, i = 0;
    for (; s[i] && i < QUOTE_MAX; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\'' && ch != '\\') q->s[o++] = (char)ch;
        else o += (size_t)snprintf(q->s + o, sizeof q->s - o, "\\x%02x", ch);
    }
    if (s[i]) { memcpy(q->s + o, "...", 3); o += 3; }
    q->s[o] = '\0';
    return q->s;
}

/* A little-endian u8/u16/u32, or a "truncated" error naming what needed it. */
static kvlm_err cur_uint(cur *c, int n, const char *what, uint32_t *out)
{
    *out = 0;
    if ((uint64_t)n > c->size - c->pos)
        return bad(c, c->pos, "truncated: %s needs %d bytes, %llu left", what, n,
                   (unsigned long long)(c->size - c->pos));
    const uint8_t *p = c->base + c->pos;
    uint32_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    c->pos += (uint64_t)n;
    *out = v;
    return KVLM_OK;
}

/* str = u16 length including the NUL, the bytes, the NUL. On success *out points at the
 * NUL-terminated bytes inside the file; *at is where the length field starts. */
static kvlm_err cur_str(cur *c, const char *what, const char **out, uint64_t *at)
{
    uint32_t len;
    *at = c->pos;
    kvlm_err e = cur_uint(c, 2, what, &len);
    if (e) return e;
    if (len == 0) return bad(c, *at, "%s: length 0 leaves no room for the terminating NUL", what);
    if (len > c->size - c->pos)
        return bad(c, *at, "truncated: %s of %u bytes, %llu left", what, len,
                   (unsigned long long)(c->size - c->pos));
    const uint8_t *p = c->base + c->pos;
    c->pos += len;
    if (p[len - 1] != 0) return bad(c, *at, "%s: not NUL-terminated at its length %u", what, len);
    const uint8_t *nul = memchr(p, 0, len - 1);
    if (nul) return bad(c, *at, "%s: NUL at byte %lld inside its %u bytes", what, (long long)(nul - p), len);
    *out = (const char *)p;
    return KVLM_OK;
}

/* ---- header and variables --------------------------------------------------------------------- */
static kvlm_err parse_header(cur *c, ct2_file *f)
{
    kvlm_err e;
    uint64_t at;
    if ((e = cur_uint(c, 4, "binary_version", &f->version))) return e;
    if (f->version == 0) return bad(c, 0, "binary version 0 is not a CTranslate2 version (1..%d)", CT2_MAX_VERSION);
    if (f->version > CT2_MAX_VERSION)
        return err_set(c->err, c->errlen, KVLM_ERR_UNSUPPORTED,
                       "%s: offset 0: binary version %u is newer than the %d this reader knows",
                       c->file, f->version, CT2_MAX_VERSION);
    f->spec_name = "";
    if (f->version >= 2) {
        if ((e = cur_str(c, "spec name", &f->spec_name, &at))) return e;
        if ((e = cur_uint(c, 4, "spec revision", &f->spec_revision))) return e;
    }
    uint32_t n;
    at = c->pos;
    if ((e = cur_uint(c, 4, "num_variables", &n))) return e;
    if (n == 0) return bad(c, at, "num_variables is 0");
    if (n > (c->size - c->pos) / MIN_VAR_BYTES)
        return bad(c, at, "truncated or corrupt: num_variables %u needs at least %llu bytes, %llu left", n,
                   (unsigned long long)n * MIN_VAR_BYTES, (unsigned long long)(c->size - c->pos));
    f->n_vars = n;
    f->vars = calloc(n, sizeof *f->vars);
    if (!f->vars) return err_set(c->err, c->errlen, KVLM_ERR_NOMEM, "%s: out of memory", c->file);
    return KVLM_OK;
}

/* Old files (version < 4) store an item size, from which CTranslate2 guesses the type. */
static bool dtype_from_item_size(uint32_t item, ct2_dtype *out)
{
    switch (item) {
    case 4: *out = CT2_F32; return true;
    case 2: *out = CT2_I16; return true;
    case 1: *out = CT2_I8; return true;
    default: return false;
    }
}

static kvlm_err parse_var(cur *c, uint32_t version, ct2_var *v)
{
    quoted q;
    uint64_t at;
    uint32_t u;
    kvlm_err e;
    if ((e = cur_str(c, "variable name", &v->name, &at))) return e;
    if (!v->name[0]) return bad(c, at, "variable name is empty");
    const char *nm = quote(v->name, &q);
    if ((e = cur_uint(c, 1, "rank", &v->rank))) return e;
    if (v->rank > CT2_MAX_RANK)
        return bad(c, at, "variable '%s': rank %u exceeds %d", nm, v->rank, CT2_MAX_RANK);
    /* dims: [rank] u32, row-major; the element count must fit int64 */
    int64_t n_elem = 1;
    for (uint32_t d = 0; d < CT2_MAX_RANK; d++) v->dims[d] = 1;
    for (uint32_t d = 0; d < v->rank; d++) {
        if ((e = cur_uint(c, 4, "dimension", &u))) return e;
        if (u == 0) return bad(c, at, "variable '%s': dimension %u is 0", nm, d);
        v->dims[d] = u;
        if (__builtin_mul_overflow(n_elem, (int64_t)u, &n_elem))
            return bad(c, at, "variable '%s': the element count overflows int64", nm);
    }
    v->n_elem = n_elem;
    uint32_t tag, count;
    if ((e = cur_uint(c, 1, version >= 4 ? "dtype id" : "item size", &tag))) return e;
    if ((e = cur_uint(c, 4, version >= 4 ? "num_bytes" : "num_elements", &count))) return e;
    if (version >= 4) {
        v->dtype = (ct2_dtype)tag;
        if (ct2_dtype_size(v->dtype) == 0) return bad(c, at, "variable '%s': unknown dtype id %u", nm, tag);
    } else {
        if (!dtype_from_item_size(tag, &v->dtype))
            return bad(c, at, "variable '%s': item size %u is not 1, 2 or 4", nm, tag);
        if ((uint64_t)count != (uint64_t)n_elem)
            return bad(c, at, "variable '%s': num_elements %u but the dimensions hold %lld", nm, count,
                       (long long)n_elem);
    }
    int64_t want;
    if (__builtin_mul_overflow(n_elem, (int64_t)ct2_dtype_size(v->dtype), &want))
        return bad(c, at, "variable '%s': the byte count overflows int64", nm);
    if (version >= 4 && (uint64_t)count != (uint64_t)want)
        return bad(c, at, "variable '%s': num_bytes %u but %lld elements of %s need %lld", nm, count,
                   (long long)n_elem, ct2_dtype_name(v->dtype), (long long)want);
    v->nbytes = (uint64_t)want;
    v->offset = c->pos;
    if (v->nbytes > c->size - c->pos)
        return bad(c, at, "truncated: variable '%s': %llu data bytes at offset %llu, %llu left", nm,
                   (unsigned long long)v->nbytes, (unsigned long long)v->offset,
                   (unsigned long long)(c->size - c->pos));
    v->data = c->base + c->pos;
    c->pos += v->nbytes;
    return KVLM_OK;
}

static kvlm_err parse_aliases(cur *c, ct2_file *f)
{
    kvlm_err e;
    uint32_t n;
    uint64_t at = c->pos, sat;
    if ((e = cur_uint(c, 4, "num_aliases", &n))) return e;
    if (n > (c->size - c->pos) / MIN_ALIAS_BYTES)
        return bad(c, at, "truncated or corrupt: num_aliases %u needs at least %llu bytes, %llu left", n,
                   (unsigned long long)n * MIN_ALIAS_BYTES, (unsigned long long)(c->size - c->pos));
    f->n_aliases = n;
    f->aliases = calloc(n ? n : 1, sizeof *f->aliases);
    if (!f->aliases) return err_set(c->err, c->errlen, KVLM_ERR_NOMEM, "%s: out of memory", c->file);
    for (uint32_t i = 0; i < n; i++) {
        if ((e = cur_str(c, "alias name", &f->aliases[i].alias, &sat))) return e;
        if (!f->aliases[i].alias[0]) return bad(c, sat, "alias name is empty");
        if ((e = cur_str(c, "alias target", &f->aliases[i].target, &sat))) return e;
    }
    return KVLM_OK;
}

/* ---- indexes ------------------------------------------------------------------------------------ */
/* Offset of the length field of a string inside the file (for messages). */
static uint64_t str_at(const ct2_file *f, const char *s) { return (uint64_t)((const uint8_t *)s - f->base) - 2; }

/* vars[] and aliases[] both start with their name (ct2_var.name, ct2_alias.alias), so
 * one sort and one search serve both: a table is its base and its element size. */
typedef struct table { const void *base; size_t stride; } table;
static const char *name_at(table t, int64_t i)
{
    return *(const char *const *)((const char *)t.base + (size_t)i * t.stride);
}
static int cmp_names(const void *a, const void *b, void *ctx)
{
    const table *t = ctx;
    return strcmp(name_at(*t, *(const int64_t *)a), name_at(*t, *(const int64_t *)b));
}

/* The name searched for: a[0..na) followed by b (so "X_scale" needs no copy). */
typedef struct key { const char *a; size_t na; const char *b; } key;
static int cmp_key(const char *s, key k)
{
    for (size_t i = 0; i < k.na; i++)   /* a has no NUL in [0, na): s ends first or differs */
        if (s[i] != k.a[i]) return (unsigned char)s[i] - (unsigned char)k.a[i];
    return strcmp(s + k.na, k.b);
}

/* Index into the table of the entry called k, or -1. sorted: [n] indexes by name. */
static int64_t search(table t, const int64_t *sorted, int64_t n, key k)
{
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = cmp_key(name_at(t, sorted[mid]), k);
        if (c == 0) return sorted[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return -1;
}
static table var_table(const ct2_file *f) { return (table){ f->vars, sizeof *f->vars }; }
static table alias_table(const ct2_file *f) { return (table){ f->aliases, sizeof *f->aliases }; }
static int64_t find_var(const ct2_file *f, key k) { return search(var_table(f), f->sorted, f->n_vars, k); }
static int64_t find_alias(const ct2_file *f, key k) { return search(alias_table(f), f->alias_sorted, f->n_aliases, k); }
static key key_of(const char *s) { return (key){ s, 0, s }; }

/* Follows every alias chain to its variable. state: 0 unvisited, 1 on the walk in
 * progress, 2 resolved (alias_var set). path holds the walk so every alias on it gets
 * the answer: O(n_aliases log n) in all, whatever the chains. */
static kvlm_err resolve_aliases(cur *c, ct2_file *f)
{
    quoted q;
    const int64_t n = f->n_aliases;
    const size_t cap = (size_t)(uint32_t)n + 1;   /* n came from a u32 */
    uint8_t *state = calloc(cap, 1);
    int64_t *path = malloc(cap * sizeof *path);
    kvlm_err e = KVLM_OK;
    if (!state || !path) { e = err_set(c->err, c->errlen, KVLM_ERR_NOMEM, "%s: out of memory", c->file); goto done; }
    for (int64_t i = 0; i < n && !e; i++) {
        int64_t len = 0, a = i, var = -1;
        while (state[a] == 0) {
            state[a] = 1;
            path[len++] = a;
            const char *t = f->aliases[a].target;
            if ((var = find_var(f, key_of(t))) >= 0) break;
            int64_t next = find_alias(f, key_of(t));
            if (next < 0) {
                e = bad(c, str_at(f, f->aliases[a].alias), "alias '%s' names a missing variable '%s'",
                        quote(f->aliases[a].alias, &q), t[0] ? t : "");
                goto done;
            }
            a = next;
        }
        if (var < 0) {
            if (state[a] == 1) {
                e = bad(c, str_at(f, f->aliases[i].alias), "alias '%s' leads to a cycle of aliases",
                        quote(f->aliases[i].alias, &q));
                goto done;
            }
            var = f->alias_var[a];   /* joined a chain resolved earlier */
        }
        for (int64_t k = 0; k < len; k++) { f->alias_var[path[k]] = var; state[path[k]] = 2; }
    }
done:
    free(state);
    free(path);
    return e;
}

static kvlm_err build_indexes(cur *c, ct2_file *f)
{
    quoted q;
    size_t nv = (size_t)f->n_vars, na = (size_t)(f->n_aliases ? f->n_aliases : 1);
    f->sorted = malloc(nv * sizeof *f->sorted);
    f->alias_sorted = malloc(na * sizeof *f->alias_sorted);
    f->alias_var = malloc(na * sizeof *f->alias_var);
    if (!f->sorted || !f->alias_sorted || !f->alias_var)
        return err_set(c->err, c->errlen, KVLM_ERR_NOMEM, "%s: out of memory", c->file);
    for (int64_t i = 0; i < f->n_vars; i++) f->sorted[i] = i;
    for (int64_t i = 0; i < f->n_aliases; i++) { f->alias_sorted[i] = i; f->alias_var[i] = -1; }
    table tv = var_table(f), ta = alias_table(f);
    qsort_r(f->sorted, nv, sizeof *f->sorted, cmp_names, &tv);
    qsort_r(f->alias_sorted, (size_t)f->n_aliases, sizeof *f->alias_sorted, cmp_names, &ta);
    for (int64_t i = 1; i < f->n_vars; i++) {
        const ct2_var *a = &f->vars[f->sorted[i - 1]], *b = &f->vars[f->sorted[i]];
        if (strcmp(a->name, b->name) == 0) {
            const ct2_var *later = a->offset > b->offset ? a : b;
            return bad(c, str_at(f, later->name), "duplicate variable name '%s'", quote(later->name, &q));
        }
    }
    for (int64_t i = 0; i < f->n_aliases; i++) {
        const ct2_alias *a = &f->aliases[f->alias_sorted[i]];
        if (i > 0 && strcmp(f->aliases[f->alias_sorted[i - 1]].alias, a->alias) == 0) {
            const char *s = f->aliases[f->alias_sorted[i - 1]].alias;
            if (s > a->alias) a = &f->aliases[f->alias_sorted[i - 1]];
            return bad(c, str_at(f, a->alias), "duplicate alias name '%s'", quote(a->alias, &q));
        }
        if (find_var(f, key_of(a->alias)) >= 0)
            return bad(c, str_at(f, a->alias), "alias '%s' has the name of a variable", quote(a->alias, &q));
    }
    return resolve_aliases(c, f);
}

static kvlm_err parse(ct2_file *f, char *err, size_t errlen)
{
    cur c = { .base = f->base, .size = f->size, .pos = 0, .file = f->path, .err = err, .errlen = errlen };
    kvlm_err e;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "%s: model.bin is little-endian; this host is not", f->path);
#endif
    if ((e = parse_header(&c, f))) return e;
    for (int64_t i = 0; i < f->n_vars; i++)
        if ((e = parse_var(&c, f->version, &f->vars[i]))) return e;
    if (f->version >= 3) {
        if ((e = parse_aliases(&c, f))) return e;
    } else {
        f->aliases = calloc(1, sizeof *f->aliases);
        if (!f->aliases) return err_set(err, errlen, KVLM_ERR_NOMEM, "%s: out of memory", f->path);
    }
    if (c.pos != c.size)
        return bad(&c, c.pos, "%llu trailing bytes after the %s",
                   (unsigned long long)(c.size - c.pos), f->version >= 3 ? "aliases" : "variables");
    return build_indexes(&c, f);
}

/* ---- open / close --------------------------------------------------------------------------------- */
/* Validates data[0..size) as the file called name. map (NULL for ct2_open_memory) is
 * the mapping of data, which the file then owns, also on failure. */
static kvlm_err open_bytes(const void *data, size_t size, void *map, const char *name, ct2_file **out,
                           char *err, size_t errlen)
{
    ct2_file *f = calloc(1, sizeof *f);
    if (!f) {
        fmap_close(map, size);
        return err_set(err, errlen, KVLM_ERR_NOMEM, "%s: out of memory", name);
    }
    snprintf(f->path, sizeof f->path, "%s", name);
    f->base = data;
    f->size = size;
    f->map = map;
    f->map_len = map ? size : 0;
    kvlm_err e = parse(f, err, errlen);
    if (e) { ct2_close(f); return e; }
    *out = f;
    return KVLM_OK;
}

kvlm_err ct2_open_memory(const void *data, size_t size, const char *name, ct2_file **out,
                         char *err, size_t errlen)
{
    *out = NULL;
    if (!name) name = "<memory>";
    if (!data && size) return err_set(err, errlen, KVLM_ERR_INVALID, "%s: NULL buffer", name);
    return open_bytes(data, size, NULL, name, out, err, errlen);
}

kvlm_err ct2_open(const char *path, ct2_file **out, char *err, size_t errlen)
{
    *out = NULL;
    void *map;
    size_t size;
    kvlm_err e = fmap_open(path, &map, &size, err, errlen);
    return e ? e : open_bytes(map, size, map, path, out, err, errlen);
}

void ct2_close(ct2_file *f)
{
    if (!f) return;
    free(f->vars);
    free(f->aliases);
    free(f->sorted);
    free(f->alias_sorted);
    free(f->alias_var);
    fmap_close(f->map, f->map_len);
    free(f);
}

/* ---- lookups ----------------------------------------------------------------------------------------- */
const ct2_var *ct2_find(const ct2_file *f, const char *name)
{
    if (!f || !name || !f->sorted) return NULL;
    int64_t i = find_var(f, key_of(name)), a;
    if (i >= 0) return &f->vars[i];
    if ((a = find_alias(f, key_of(name))) >= 0) return &f->vars[f->alias_var[a]];
    /* CTranslate2 also maps alias + "_scale" to target + "_scale" (model.cc, Model::load) */
    static const char suffix[] = "_scale";
    const size_t n = strlen(name), ns = sizeof suffix - 1;
    if (n <= ns || strcmp(name + n - ns, suffix) != 0) return NULL;
    if ((a = find_alias(f, (key){ name, n - ns, "" })) < 0) return NULL;
    const char *target = f->vars[f->alias_var[a]].name;
    key k = { target, strlen(target), suffix };
    if ((i = find_var(f, k)) >= 0) return &f->vars[i];
    if ((a = find_alias(f, k)) >= 0) return &f->vars[f->alias_var[a]];
    return NULL;
}

static bool dtype_is_int(ct2_dtype t) { return t == CT2_I8 || t == CT2_I16 || t == CT2_I32; }

/* Element i of an integer variable (v->dtype int8/16/32), little-endian host. */
static int64_t int_at(const ct2_var *v, int64_t i)
{
    const uint8_t *p = (const uint8_t *)v->data;
    switch (v->dtype) {
    case CT2_I8: { int8_t x; memcpy(&x, p + i, 1); return x; }
    case CT2_I16: { int16_t x; memcpy(&x, p + 2 * i, 2); return x; }
    default: { int32_t x; memcpy(&x, p + 4 * i, 4); return x; }
    }
}

bool ct2_get_int(const ct2_file *f, const char *name, int64_t *out)
{
    const ct2_var *v = ct2_find(f, name);
    if (!v || v->n_elem != 1 || !dtype_is_int(v->dtype)) return false;
    *out = int_at(v, 0);
    return true;
}

bool ct2_get_float(const ct2_file *f, const char *name, double *out)
{
    const ct2_var *v = ct2_find(f, name);
    if (!v || v->n_elem != 1 || dtype_is_int(v->dtype)) return false;
    *out = ct2_var_float(v, 0);
    return true;
}

float ct2_var_float(const ct2_var *v, int64_t i)
{
    const uint8_t *p = (const uint8_t *)v->data;
    uint16_t h;
    switch (v->dtype) {
    case CT2_F32: { float x; memcpy(&x, p + 4 * i, 4); return x; }
    case CT2_F16: memcpy(&h, p + 2 * i, 2); return fp16_to_f32(h);
    case CT2_BF16: memcpy(&h, p + 2 * i, 2); return bf16_to_f32(h);
    default: return (float)int_at(v, i);
    }
}
