/* gguf.c - the GGUF reader (see gguf.h for the format and the invariants on success).
 * Room: model. May touch: core/err, kern/quant (type and block sizes), libc, mmap.
 *
 * Parsing is one forward pass of a bounds-checked cursor (rd) over the bytes:
 *
 *   header   magic "GGUF" u32 | version u32 | n_tensors u64 | n_kv u64
 *   kv[i]    key (u64 len + bytes) | vtype u32 | value
 *            value: scalar | string (u64 len + bytes) | array (elem vtype u32, n u64, elems)
 *   info[t]  name | n_dims u32 | ne u64[n_dims] | type u32 | offset u64
 *   pad      to general.alignment (default 32)
 *   data     tensor bytes
 *
 * Hostile-input rules kept throughout:
 *   - every read goes through rd_need(), which checks the bytes left (no pointer
 *     arithmetic on unchecked lengths);
 *   - a count is checked against the minimum bytes its items need before anything is
 *     allocated for it, so allocations are bounded by a small multiple of the file size;
 *   - sizes are computed with __builtin_*_overflow;
 *   - the only cleanup path is gguf_close() on the partially built file (calloc'd, so
 *     every pointer is NULL or owned).
 * Errors are "<file>: offset <byte>: <problem>", the offset being where the offending
 * item starts. */
#include "model/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "kern/quant.h"

enum {
    GGUF_DEFAULT_ALIGNMENT = 32,
    GGUF_MAX_DIMS = 4,
    MIN_KV_BYTES = 8 + 4 + 1,           /* key length, vtype, smallest value */
    MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8,
    SHOW_MAX = 64,                      /* bytes of a key/name quoted in messages */
};

/* ---- messages ------------------------------------------------------------------------ */
typedef struct show_buf { char s[SHOW_MAX * 4 + 8]; } show_buf;

/* A printable, bounded rendering of a view for messages (non-printables as \xNN). */
static const char *show(gguf_str v, show_buf *b)
{
    size_t o = 0;
    uint64_t n = v.len < SHOW_MAX ? v.len : SHOW_MAX;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v.ptr[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') b->s[o++] = (char)c;
        else o += (size_t)snprintf(b->s + o, sizeof b->s - o, "\\x%02x", c);
    }
    if (v.len > SHOW_MAX) { memcpy(b->s + o, "...", 3); o += 3; }
    b->s[o] = '\0';
    return b->s;
}

/* The parse cursor. name is the file's name for messages. */
typedef struct rd {
    const uint8_t *p;
    uint64_t size, pos;
    const char *name;
    char *err;
    size_t errlen;
} rd;

__attribute__((format(printf, 4, 5)))
static kvlm_err fail_at(const rd *r, uint64_t off, kvlm_err code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set(r->err, r->errlen, code, "%s: offset %llu: %s", r->name,
                   (unsigned long long)off, msg);
}

/* ---- bounds-checked reads ------------------------------------------------------------- */
static kvlm_err rd_need(const rd *r, uint64_t n, const char *what)
{
    if (n <= r->size - r->pos) return KVLM_OK;
    return fail_at(r, r->pos, KVLM_ERR_FORMAT, "truncated: %s needs %llu bytes, %llu left", what,
                   (unsigned long long)n, (unsigned long long)(r->size - r->pos));
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static kvlm_err rd_uint(rd *r, int n, uint64_t *out, const char *what)
{
    kvlm_err e = rd_need(r, (uint64_t)n, what);
    if (e) return e;
    *out = le(r->p + r->pos, n);
    r->pos += (uint64_t)n;
    return KVLM_OK;
}

static kvlm_err rd_u32(rd *r, uint32_t *out, const char *what)
{
    uint64_t v = 0;
    kvlm_err e = rd_uint(r, 4, &v, what);
    *out = (uint32_t)v;
    return e;
}

static kvlm_err rd_str(rd *r, gguf_str *out, const char *what)
{
    uint64_t start = r->pos, len;
    kvlm_err e = rd_uint(r, 8, &len, what);
    if (e) return e;
    if (len > r->size - r->pos)
        return fail_at(r, start, KVLM_ERR_FORMAT, "%s: length %llu exceeds the %llu bytes left",
                       what, (unsigned long long)len, (unsigned long long)(r->size - r->pos));
    out->ptr = (const char *)r->p + r->pos;
    out->len = len;
    r->pos += len;
    return KVLM_OK;
}

/* ---- value types ------------------------------------------------------------------------ */
const char *gguf_vtype_name(gguf_vtype t)
{
    static const char *const names[] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool",
        "string", "array", "uint64", "int64", "float64",
    };
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

/* Bytes of one scalar element; 0 for string/array/unknown. */
static int vtype_size(uint32_t t)
{
    switch (t) {
    case GGUF_VT_U8: case GGUF_VT_I8: case GGUF_VT_BOOL: return 1;
    case GGUF_VT_U16: case GGUF_VT_I16: return 2;
    case GGUF_VT_U32: case GGUF_VT_I32: case GGUF_VT_F32: return 4;
    case GGUF_VT_U64: case GGUF_VT_I64: case GGUF_VT_F64: return 8;
    default: return 0;
    }
}

static bool vtype_is_signed(uint32_t t)
{
    return t == GGUF_VT_I8 || t == GGUF_VT_I16 || t == GGUF_VT_I32 || t == GGUF_VT_I64;
}
static bool vtype_is_unsigned(uint32_t t)
{
    return t == GGUF_VT_U8 || t == GGUF_VT_U16 || t == GGUF_VT_U32 || t == GGUF_VT_U64;
}
static bool vtype_is_float(uint32_t t) { return t == GGUF_VT_F32 || t == GGUF_VT_F64; }

static int64_t sign_extend(uint64_t v, int bytes)
{
    if (bytes == 8) return (int64_t)v;
    int sh = 64 - 8 * bytes;
    return (int64_t)(v << sh) >> sh;   /* arithmetic shift: gcc/clang define it */
}

static double bits_to_float(uint64_t v, int bytes)
{
    if (bytes == 4) { uint32_t u = (uint32_t)v; float f; memcpy(&f, &u, 4); return f; }
    double d;
    memcpy(&d, &v, 8);
    return d;
}

/* Stores the scalar of type t, read as raw LE bits, into kv->v. */
static void set_scalar(gguf_kv *kv, uint32_t t, uint64_t raw)
{
    int sz = vtype_size(t);
    if (vtype_is_unsigned(t)) kv->v.u = raw;
    else if (vtype_is_signed(t)) kv->v.i = sign_extend(raw, sz);
    else if (vtype_is_float(t)) kv->v.f = bits_to_float(raw, sz);
    else kv->v.b = raw != 0;
}

/* ---- kv pairs ---------------------------------------------------------------------------- */
static kvlm_err parse_array(rd *r, gguf_kv *kv)
{
    show_buf sb;
    const char *k = show(kv->key, &sb);
    uint64_t at = r->pos, n;
    uint32_t et;
    kvlm_err e;
    if ((e = rd_u32(r, &et, "array element type"))) return e;
    if ((e = rd_uint(r, 8, &n, "array length"))) return e;
    if (et == GGUF_VT_ARR)
        return fail_at(r, at, KVLM_ERR_UNSUPPORTED, "key '%s': arrays of arrays are not supported", k);
    kv->v.arr.type = (gguf_vtype)et;
    kv->v.arr.n = n;
    const uint64_t left = r->size - r->pos;
    if (et == GGUF_VT_STR) {
        if (n > left / 8)
            return fail_at(r, at, KVLM_ERR_FORMAT, "key '%s': %llu strings cannot fit in the %llu bytes left",
                           k, (unsigned long long)n, (unsigned long long)left);
        gguf_str *strs = calloc(n ? (size_t)n : 1, sizeof *strs);
        if (!strs) return fail_at(r, at, KVLM_ERR_NOMEM, "key '%s': out of memory for %llu strings", k,
                                  (unsigned long long)n);
        kv->v.arr.strs = strs;           /* owned from here: gguf_close frees it */
        for (uint64_t i = 0; i < n; i++)
            if ((e = rd_str(r, &strs[i], "array string"))) return e;
        return KVLM_OK;
    }
    int sz = vtype_size(et);
    if (sz == 0)
        return fail_at(r, at, KVLM_ERR_FORMAT, "key '%s': unknown array element type %u", k, et);
    if (n > left / (uint64_t)sz)
        return fail_at(r, at, KVLM_ERR_FORMAT, "key '%s': %llu elements of %s cannot fit in the %llu bytes left",
                       k, (unsigned long long)n, gguf_vtype_name((gguf_vtype)et), (unsigned long long)left);
    kv->v.arr.data = r->p + r->pos;
    if (et == GGUF_VT_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (r->p[r->pos + i] > 1)
                return fail_at(r, r->pos + i, KVLM_ERR_FORMAT, "key '%s': bool element %llu is %u (not 0/1)",
                               k, (unsigned long long)i, r->p[r->pos + i]);
    r->pos += n * (uint64_t)sz;
    return KVLM_OK;
}

static kvlm_err parse_kv(rd *r, gguf_kv *kv)
{
    kvlm_err e;
    kv->offset = r->pos;
    if ((e = rd_str(r, &kv->key, "key"))) return e;
    if (kv->key.len == 0) return fail_at(r, kv->offset, KVLM_ERR_FORMAT, "empty key");
    show_buf sb;
    uint64_t at = r->pos;
    uint32_t t;
    if ((e = rd_u32(r, &t, "value type"))) return e;
    switch (t) {
    case GGUF_VT_STR:
        kv->type = GGUF_VT_STR;
        return rd_str(r, &kv->v.s, "string value");
    case GGUF_VT_ARR:
        kv->type = GGUF_VT_ARR;
        return parse_array(r, kv);
    default: {
        int sz = vtype_size(t);
        if (sz == 0)
            return fail_at(r, at, KVLM_ERR_FORMAT, "key '%s': unknown value type %u", show(kv->key, &sb), t);
        uint64_t raw;
        if ((e = rd_uint(r, sz, &raw, "value"))) return e;
        if (t == GGUF_VT_BOOL && raw > 1)
            return fail_at(r, at + 4, KVLM_ERR_FORMAT, "key '%s': bool value is %llu (not 0/1)",
                           show(kv->key, &sb), (unsigned long long)raw);
        kv->type = (gguf_vtype)t;
        set_scalar(kv, t, raw);
        return KVLM_OK;
    }
    }
}

/* ---- tensor infos -------------------------------------------------------------------------- */
static kvlm_err parse_tensor_info(rd *r, gguf_tensor *t)
{
    kvlm_err e;
    show_buf sb;
    t->info_offset = r->pos;
    if ((e = rd_str(r, &t->name, "tensor name"))) return e;
    if (t->name.len == 0) return fail_at(r, t->info_offset, KVLM_ERR_FORMAT, "empty tensor name");
    const char *nm = show(t->name, &sb);
    uint64_t at = r->pos;
    if ((e = rd_u32(r, &t->n_dims, "tensor n_dims"))) return e;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return fail_at(r, at, KVLM_ERR_FORMAT, "tensor '%s': n_dims %u not in 1..%d", nm, t->n_dims, GGUF_MAX_DIMS);
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t v;
        at = r->pos;
        if ((e = rd_uint(r, 8, &v, "tensor dim"))) return e;
        if (v == 0 || v > (uint64_t)INT64_MAX)
            return fail_at(r, at, KVLM_ERR_FORMAT, "tensor '%s': ne[%u] = %llu not in [1, 2^63)", nm, d,
                           (unsigned long long)v);
        t->ne[d] = (int64_t)v;
    }
    at = r->pos;
    if ((e = rd_u32(r, &t->type, "tensor type"))) return e;
    const quant_traits *qt = quant_get(t->type);
    if (!qt) return fail_at(r, at, KVLM_ERR_FORMAT, "tensor '%s': unknown type %u", nm, t->type);
    if ((e = rd_uint(r, 8, &t->offset, "tensor offset"))) return e;

    int64_t nel = t->ne[0], rows = 1;
    for (uint32_t d = 1; d < t->n_dims; d++)
        if (__builtin_mul_overflow(rows, t->ne[d], &rows) || __builtin_mul_overflow(nel, t->ne[d], &nel))
            return fail_at(r, t->info_offset, KVLM_ERR_FORMAT, "tensor '%s': element count overflows", nm);
    if (t->ne[0] % qt->blck_size != 0)
        return fail_at(r, t->info_offset, KVLM_ERR_FORMAT, "tensor '%s': ne[0] = %lld is not a multiple of %s's block size %lld",
                       nm, (long long)t->ne[0], qt->name, (long long)qt->blck_size);
    uint64_t row = quant_row_size(t->type, t->ne[0]);
    if (row == 0 || __builtin_mul_overflow(row, (uint64_t)rows, &t->nbytes))
        return fail_at(r, t->info_offset, KVLM_ERR_FORMAT, "tensor '%s': byte size overflows", nm);
    return KVLM_OK;
}

/* ---- sorted indexes, duplicates ----------------------------------------------------------------- */
static int cmp_view(const char *a, uint64_t na, const char *b, uint64_t nb)
{
    int c = memcmp(a, b, na < nb ? na : nb);
    if (c) return c;
    return na < nb ? -1 : na > nb;
}

static int cmp_kv(const void *x, const void *y)
{
    const gguf_kv *a = *(const gguf_kv *const *)x, *b = *(const gguf_kv *const *)y;
    int c = cmp_view(a->key.ptr, a->key.len, b->key.ptr, b->key.len);
    return c ? c : (a->offset > b->offset) - (a->offset < b->offset);
}

static int cmp_tensor(const void *x, const void *y)
{
    const gguf_tensor *a = *(const gguf_tensor *const *)x, *b = *(const gguf_tensor *const *)y;
    int c = cmp_view(a->name.ptr, a->name.len, b->name.ptr, b->name.len);
    return c ? c : (a->info_offset > b->info_offset) - (a->info_offset < b->info_offset);
}

static kvlm_err build_indexes(rd *r, gguf_file *f)
{
    show_buf sb;
    f->kv_sorted = malloc((f->n_kv ? f->n_kv : 1) * sizeof *f->kv_sorted);
    f->tensor_sorted = malloc((f->n_tensors ? f->n_tensors : 1) * sizeof *f->tensor_sorted);
    if (!f->kv_sorted || !f->tensor_sorted)
        return fail_at(r, 0, KVLM_ERR_NOMEM, "out of memory for the indexes");
    for (uint64_t i = 0; i < f->n_kv; i++) f->kv_sorted[i] = &f->kv[i];
    for (uint64_t i = 0; i < f->n_tensors; i++) f->tensor_sorted[i] = &f->tensors[i];
    qsort(f->kv_sorted, f->n_kv, sizeof *f->kv_sorted, cmp_kv);
    qsort(f->tensor_sorted, f->n_tensors, sizeof *f->tensor_sorted, cmp_tensor);
    for (uint64_t i = 1; i < f->n_kv; i++) {
        const gguf_kv *a = f->kv_sorted[i - 1], *b = f->kv_sorted[i];
        if (cmp_view(a->key.ptr, a->key.len, b->key.ptr, b->key.len) == 0)
            return fail_at(r, b->offset, KVLM_ERR_FORMAT, "duplicate key '%s' (first at offset %llu)",
                           show(b->key, &sb), (unsigned long long)a->offset);
    }
    for (uint64_t i = 1; i < f->n_tensors; i++) {
        const gguf_tensor *a = f->tensor_sorted[i - 1], *b = f->tensor_sorted[i];
        if (cmp_view(a->name.ptr, a->name.len, b->name.ptr, b->name.len) == 0)
            return fail_at(r, b->info_offset, KVLM_ERR_FORMAT, "duplicate tensor '%s' (first at offset %llu)",
                           show(b->name, &sb), (unsigned long long)a->info_offset);
    }
    return KVLM_OK;
}

/* ---- the parse ------------------------------------------------------------------------------ */
static kvlm_err parse_header(rd *r, gguf_file *f)
{
    kvlm_err e;
    if ((e = rd_need(r, 4, "magic"))) return e;
    if (memcmp(r->p, "GGUF", 4) != 0)
        return fail_at(r, 0, KVLM_ERR_FORMAT, "bad magic %02x %02x %02x %02x (expected \"GGUF\")",
                       r->p[0], r->p[1], r->p[2], r->p[3]);
    r->pos = 4;
    if ((e = rd_u32(r, &f->version, "version"))) return e;
    if (f->version == 1)
        return fail_at(r, 4, KVLM_ERR_UNSUPPORTED, "GGUF version 1 is not supported (2 or 3)");
    if (f->version != 2 && f->version != 3) {
        uint32_t sw = __builtin_bswap32(f->version);
        if (sw >= 1 && sw <= 3)
            return fail_at(r, 4, KVLM_ERR_UNSUPPORTED, "big-endian GGUF (version %u) is not supported", sw);
        return fail_at(r, 4, KVLM_ERR_FORMAT, "unknown GGUF version %u (2 or 3 expected)", f->version);
    }
    if ((e = rd_uint(r, 8, &f->n_tensors, "tensor count"))) return e;
    if ((e = rd_uint(r, 8, &f->n_kv, "metadata count"))) return e;
    /* Both counts must fit in what is left even at the smallest item sizes. */
    const uint64_t left = r->size - r->pos;
    if (f->n_kv > left / MIN_KV_BYTES || f->n_tensors > left / MIN_TENSOR_INFO_BYTES ||
        f->n_kv * MIN_KV_BYTES > left - f->n_tensors * MIN_TENSOR_INFO_BYTES)
        return fail_at(r, 8, KVLM_ERR_FORMAT, "%llu tensors and %llu metadata pairs cannot fit in the %llu bytes left",
                       (unsigned long long)f->n_tensors, (unsigned long long)f->n_kv, (unsigned long long)left);
    return KVLM_OK;
}

static kvlm_err parse_alignment(rd *r, gguf_file *f)
{
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = gguf_find_kv(f, "general.alignment");
    if (!kv) return KVLM_OK;
    if (kv->type != GGUF_VT_U32)
        return fail_at(r, kv->offset, KVLM_ERR_FORMAT, "general.alignment has type %s, expected uint32",
                       gguf_vtype_name(kv->type));
    if (kv->v.u == 0 || (kv->v.u & (kv->v.u - 1)) != 0)
        return fail_at(r, kv->offset, KVLM_ERR_FORMAT, "general.alignment %llu is not a nonzero power of two",
                       (unsigned long long)kv->v.u);
    f->alignment = kv->v.u;
    return KVLM_OK;
}

/* Natural alignment of a type's elements or blocks (fp16 fields: 2, float/int32: 4, 64-bit: 8),
 * so kernels may read blocks through their structs. */
static uint64_t type_align(uint32_t type, const quant_traits *qt)
{
    if (qt->blck_size == 1) return qt->type_size;          /* F32 4, F16/BF16 2, I8 1, I64 8 ... */
    if (type == QT_Q8_K) return 4;                         /* float d */
    return qt->type_size % 2 == 0 ? 2 : 1;                 /* fp16 scales first (MXFP4: bytes) */
}

/* Data section start, then every tensor's placement inside the file. */
static kvlm_err place_tensors(rd *r, gguf_file *f)
{
    show_buf sb;
    uint64_t end = r->pos;
    if (__builtin_add_overflow(end, f->alignment - 1, &f->data_offset))
        return fail_at(r, end, KVLM_ERR_FORMAT, "data section offset overflows");
    f->data_offset &= ~(f->alignment - 1);
    if (f->n_tensors > 0 && f->data_offset > f->size)
        return fail_at(r, end, KVLM_ERR_FORMAT, "data section starts at %llu, past the end of the file (%llu bytes)",
                       (unsigned long long)f->data_offset, (unsigned long long)f->size);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        const char *nm = show(t->name, &sb);
        if (t->offset % f->alignment != 0)
            return fail_at(r, t->info_offset, KVLM_ERR_FORMAT, "tensor '%s': offset %llu is not a multiple of the alignment %llu",
                           nm, (unsigned long long)t->offset, (unsigned long long)f->alignment);
        uint64_t a, b;
        if (__builtin_add_overflow(f->data_offset, t->offset, &a) || __builtin_add_overflow(a, t->nbytes, &b))
            return fail_at(r, t->info_offset, KVLM_ERR_FORMAT, "tensor '%s': data offset %llu + %llu bytes overflows",
                           nm, (unsigned long long)t->offset, (unsigned long long)t->nbytes);
        if (b > f->size)
            return fail_at(r, t->info_offset, KVLM_ERR_FORMAT, "tensor '%s': data [%llu, %llu) extends past end of file (%llu bytes)",
                           nm, (unsigned long long)a, (unsigned long long)b, (unsigned long long)f->size);
        uint64_t need = type_align(t->type, quant_get(t->type));
        if ((uintptr_t)(f->base + a) % need != 0)
            return fail_at(r, t->info_offset, KVLM_ERR_FORMAT, "tensor '%s': data at offset %llu is not %llu-byte aligned for %s",
                           nm, (unsigned long long)a, (unsigned long long)need, quant_get(t->type)->name);
        t->data = f->base + a;
    }
    return KVLM_OK;
}

static kvlm_err parse(gguf_file *f, char *err, size_t errlen)
{
    rd r = { .p = f->base, .size = f->size, .pos = 0, .name = f->path, .err = err, .errlen = errlen };
    kvlm_err e;
    if ((e = parse_header(&r, f))) return e;
    f->kv = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv);
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    if (!f->kv || !f->tensors) return fail_at(&r, 8, KVLM_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; i < f->n_kv; i++)
        if ((e = parse_kv(&r, &f->kv[i]))) return e;
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if ((e = parse_tensor_info(&r, &f->tensors[i]))) return e;
    if ((e = build_indexes(&r, f))) return e;
    if ((e = parse_alignment(&r, f))) return e;
    return place_tensors(&r, f);
}

static gguf_file *file_new(const char *name)
{
    gguf_file *f = calloc(1, sizeof *f);
    if (f) snprintf(f->path, sizeof f->path, "%s", name);
    return f;
}

kvlm_err gguf_open_memory(const void *buf, size_t size, const char *name, gguf_file **out,
                          char *err, size_t errlen)
{
    *out = NULL;
    if (!name) name = "<memory>";
    if (!buf && size) return err_set(err, errlen, KVLM_ERR_INVALID, "%s: NULL buffer", name);
    gguf_file *f = file_new(name);
    if (!f) return err_set(err, errlen, KVLM_ERR_NOMEM, "%s: out of memory", name);
    f->base = buf;
    f->size = size;
    kvlm_err e = parse(f, err, errlen);
    if (e) goto fail;
    *out = f;
    return KVLM_OK;
fail:
    gguf_close(f);
    return e;
}

kvlm_err gguf_open(const char *path, gguf_file **out, char *err, size_t errlen)
{
    *out = NULL;
    kvlm_err e;
    int fd = -1;
    gguf_file *f = file_new(path);
    if (!f) return err_set(err, errlen, KVLM_ERR_NOMEM, "%s: out of memory", path);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { e = err_set(err, errlen, KVLM_ERR_IO, "%s: open: %s", path, strerror(errno)); goto fail; }
    struct stat st;
    if (fstat(fd, &st) != 0) { e = err_set(err, errlen, KVLM_ERR_IO, "%s: stat: %s", path, strerror(errno)); goto fail; }
    if (!S_ISREG(st.st_mode)) { e = err_set(err, errlen, KVLM_ERR_IO, "%s: not a regular file", path); goto fail; }
    if (st.st_size == 0) {
        e = err_set(err, errlen, KVLM_ERR_FORMAT, "%s: offset 0: truncated: the file is empty", path);
        goto fail;
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) { e = err_set(err, errlen, KVLM_ERR_IO, "%s: mmap: %s", path, strerror(errno)); goto fail; }
    close(fd);
    fd = -1;
    f->map = map;
    f->map_size = (size_t)st.st_size;
    f->base = map;
    f->size = (uint64_t)st.st_size;
    if ((e = parse(f, err, errlen))) goto fail;
    *out = f;
    return KVLM_OK;
fail:
    if (fd >= 0) close(fd);
    gguf_close(f);
    return e;
}

void gguf_close(gguf_file *f)
{
    if (!f) return;
    if (f->kv)
        for (uint64_t i = 0; i < f->n_kv; i++)
            if (f->kv[i].type == GGUF_VT_ARR && f->kv[i].v.arr.type == GGUF_VT_STR)
                free((void *)f->kv[i].v.arr.strs);
    free(f->kv);
    free(f->tensors);
    free(f->kv_sorted);
    free(f->tensor_sorted);
    if (f->map) munmap(f->map, f->map_size);
    free(f);
}

/* ---- lookups ---------------------------------------------------------------------------------- */
bool gguf_str_eq(gguf_str s, const char *c)
{
    size_t n = strlen(c);
    return s.len == n && memcmp(s.ptr, c, n) == 0;
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key)
{
    if (!f || !key || !f->kv_sorted) return NULL;
    uint64_t lo = 0, hi = f->n_kv, n = strlen(key);
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const gguf_kv *kv = f->kv_sorted[mid];
        int c = cmp_view(kv->key.ptr, kv->key.len, key, n);
        if (c == 0) return kv;
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    if (!f || !name || !f->tensor_sorted) return NULL;
    uint64_t lo = 0, hi = f->n_tensors, n = strlen(name);
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const gguf_tensor *t = f->tensor_sorted[mid];
        int c = cmp_view(t->name.ptr, t->name.len, name, n);
        if (c == 0) return t;
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

/* ---- typed getters ------------------------------------------------------------------------------ */
static kvlm_err lookup(const gguf_file *f, const char *key, const gguf_kv **kv, char *err, size_t errlen)
{
    *kv = gguf_find_kv(f, key);
    if (!*kv) return err_set(err, errlen, KVLM_ERR_INVALID, "%s: key not found: '%s'", f->path, key);
    return KVLM_OK;
}

static kvlm_err wrong_type(const gguf_file *f, const gguf_kv *kv, const char *key, const char *want,
                           char *err, size_t errlen)
{
    return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: offset %llu: key '%s' has type %s, expected %s",
                   f->path, (unsigned long long)kv->offset, key, gguf_vtype_name(kv->type), want);
}

kvlm_err gguf_get_int(const gguf_file *f, const char *key, int64_t *out, char *err, size_t errlen)
{
    const gguf_kv *kv;
    kvlm_err e = lookup(f, key, &kv, err, errlen);
    if (e) return e;
    if (vtype_is_signed(kv->type)) { *out = kv->v.i; return KVLM_OK; }
    if (!vtype_is_unsigned(kv->type)) return wrong_type(f, kv, key, "an integer", err, errlen);
    if (kv->v.u > (uint64_t)INT64_MAX)
        return err_set(err, errlen, KVLM_ERR_FORMAT, "%s: offset %llu: key '%s': value %llu does not fit int64",
                       f->path, (unsigned long long)kv->offset, key, (unsigned long long)kv->v.u);
    *out = (int64_t)kv->v.u;
    return KVLM_OK;
}

kvlm_err gguf_get_float(const gguf_file *f, const char *key, double *out, char *err, size_t errlen)
{
    const gguf_kv *kv;
    kvlm_err e = lookup(f, key, &kv, err, errlen);
    if (e) return e;
    if (vtype_is_float(kv->type)) *out = kv->v.f;
    else if (vtype_is_signed(kv->type)) *out = (double)kv->v.i;
    else if (vtype_is_unsigned(kv->type)) *out = (double)kv->v.u;
    else return wrong_type(f, kv, key, "a number", err, errlen);
    return KVLM_OK;
}

kvlm_err gguf_get_bool(const gguf_file *f, const char *key, bool *out, char *err, size_t errlen)
{
    const gguf_kv *kv;
    kvlm_err e = lookup(f, key, &kv, err, errlen);
    if (e) return e;
    if (kv->type != GGUF_VT_BOOL) return wrong_type(f, kv, key, "bool", err, errlen);
    *out = kv->v.b;
    return KVLM_OK;
}

kvlm_err gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, char *err, size_t errlen)
{
    const gguf_kv *kv;
    kvlm_err e = lookup(f, key, &kv, err, errlen);
    if (e) return e;
    if (kv->type != GGUF_VT_STR) return wrong_type(f, kv, key, "string", err, errlen);
    *out = kv->v.s;
    return KVLM_OK;
}

kvlm_err gguf_get_arr(const gguf_file *f, const char *key, const gguf_kv **out, char *err, size_t errlen)
{
    const gguf_kv *kv;
    kvlm_err e = lookup(f, key, &kv, err, errlen);
    if (e) return e;
    if (kv->type != GGUF_VT_ARR) return wrong_type(f, kv, key, "array", err, errlen);
    *out = kv;
    return KVLM_OK;
}

bool gguf_arr_get_int(const gguf_kv *kv, uint64_t i, int64_t *out)
{
    if (!kv || kv->type != GGUF_VT_ARR || i >= kv->v.arr.n) return false;
    uint32_t t = kv->v.arr.type;
    int sz = vtype_size(t);
    if (sz == 0 || vtype_is_float(t)) return false;
    uint64_t raw = le((const uint8_t *)kv->v.arr.data + i * (uint64_t)sz, sz);
    if (vtype_is_signed(t)) { *out = sign_extend(raw, sz); return true; }
    if (raw > (uint64_t)INT64_MAX) return false;
    *out = (int64_t)raw;
    return true;
}

bool gguf_arr_get_float(const gguf_kv *kv, uint64_t i, double *out)
{
    if (!kv || kv->type != GGUF_VT_ARR || i >= kv->v.arr.n) return false;
    uint32_t t = kv->v.arr.type;
    int sz = vtype_size(t);
    if (sz == 0 || t == GGUF_VT_BOOL) return false;
    uint64_t raw = le((const uint8_t *)kv->v.arr.data + i * (uint64_t)sz, sz);
    if (vtype_is_float(t)) *out = bits_to_float(raw, sz);
    else if (vtype_is_signed(t)) *out = (double)sign_extend(raw, sz);
    else *out = (double)raw;
    return true;
}
