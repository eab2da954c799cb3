/* gguf.h - a zero-copy reader for GGUF files (versions 2 and 3, little-endian).
 * Room: model. May touch: core (errors), kern/quant (type traits: block and type sizes).
 *
 * The file is hostile input: gguf_open validates every length, count, type, dimension
 * and offset before anything uses it, and on success these hold:
 *   - every gguf_str, every array and every tensor's data lies inside the file;
 *   - keys are unique and non-empty; tensor names are unique and non-empty;
 *   - a tensor has 1..4 dims, each ne in [1, INT64_MAX], a product that fits int64,
 *     a type known to quant_get() (possibly !supported), ne[0] a multiple of the
 *     type's block size, offset a multiple of `alignment`, and
 *     data_offset + offset + nbytes <= size, and a data pointer aligned for its
 *     blocks (2 bytes for fp16 fields, 4 for f32/Q8_K, 8 for 64-bit types), so kernels
 *     may read blocks through their structs (matters only with general.alignment < 8
 *     or a misaligned gguf_open_memory buffer);
 *   - general.alignment, when present, is a u32 nonzero power of two (default 32).
 * Anything else gives KVLM_ERR_FORMAT (version 1, big-endian files and nested arrays:
 * KVLM_ERR_UNSUPPORTED) with "<file>: offset <byte>: <problem>" in err, and nothing
 * leaks. Nothing here prints.
 *
 *   file: [ header | kv pairs | tensor infos | pad to alignment | data section ]
 *                                                               ^ data_offset
 *   tensor t's bytes: base + data_offset + t.offset, t.nbytes long.
 *   (With no tensors the file may end before data_offset: it is then not checked.)
 *
 * Lifetime: every pointer handed out (gguf_str views, arr.data, arr.strs, tensor data,
 * the kv and tensor arrays) is borrowed from the gguf_file and stays valid until
 * gguf_close. Strings are NOT NUL-terminated. Numeric array data is raw little-endian
 * and may be unaligned: read it with gguf_arr_get_int/gguf_arr_get_float or memcpy.
 * Lookups are O(log n) (sorted indexes built at open). A gguf_file is read-only after
 * open and may be shared between threads. */
#ifndef KVLM_MODEL_GGUF_H
#define KVLM_MODEL_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"

typedef struct gguf_str { const char *ptr; uint64_t len; } gguf_str;

typedef enum gguf_vtype {
    GGUF_VT_U8 = 0, GGUF_VT_I8 = 1, GGUF_VT_U16 = 2, GGUF_VT_I16 = 3, GGUF_VT_U32 = 4,
    GGUF_VT_I32 = 5, GGUF_VT_F32 = 6, GGUF_VT_BOOL = 7, GGUF_VT_STR = 8, GGUF_VT_ARR = 9,
    GGUF_VT_U64 = 10, GGUF_VT_I64 = 11, GGUF_VT_F64 = 12
} gguf_vtype;

/* Which member of v holds a scalar: U8/U16/U32/U64 -> u; I8/I16/I32/I64 -> i (sign
 * extended); F32/F64 -> f (widened); BOOL -> b; STR -> s; ARR -> arr. An array's
 * elements are scalars or strings (arrays of arrays are rejected). */
typedef struct gguf_kv {
    gguf_str   key;
    gguf_vtype type;
    union {
        uint64_t u; int64_t i; double f; bool b; gguf_str s;
        struct {
            gguf_vtype     type;   /* element type (never GGUF_VT_ARR) */
            uint64_t       n;
            const void    *data;   /* raw LE elements for numeric types (inside the file) */
            const gguf_str *strs;  /* for string arrays: n views (owned by the gguf_file) */
        } arr;
    } v;
    uint64_t offset;               /* file offset of this pair, for messages */
} gguf_kv;

typedef struct gguf_tensor {
    gguf_str    name;
    uint32_t    n_dims;
    int64_t     ne[4];             /* ne[0] is the contiguous axis; unused dims = 1 */
    uint32_t    type;              /* ggml type id (kern/quant.h QT_*) */
    uint64_t    offset;            /* relative to the data section */
    const void *data;              /* base + data_offset + offset */
    uint64_t    nbytes;
    uint64_t    info_offset;       /* added: file offset of this tensor's info, for messages */
} gguf_tensor;

typedef struct gguf_file {
    const uint8_t *base;
    uint64_t    size;
    uint32_t    version;
    uint64_t    alignment;
    uint64_t    data_offset;
    uint64_t    n_kv;
    gguf_kv    *kv;                /* [n_kv] in file order */
    uint64_t    n_tensors;
    gguf_tensor *tensors;          /* [n_tensors] in file order */
    char        path[512];         /* path or name, for messages (truncated if longer) */
    /* internal */
    void       *map;               /* mmap'd region (gguf_open) or NULL (gguf_open_memory) */
    size_t      map_size;
    const gguf_kv     **kv_sorted;      /* [n_kv] by key */
    const gguf_tensor **tensor_sorted;  /* [n_tensors] by name */
} gguf_file;

/* Maps path read-only and parses it. On success *out owns the mapping. */
kvlm_err gguf_open(const char *path, gguf_file **out, char *err, size_t errlen);
/* Parses buf[0..size) in place: no copy; buf must outlive the file. name is used in
 * messages (NULL: "<memory>"). Tensor data alignment is relative to buf. */
kvlm_err gguf_open_memory(const void *buf, size_t size, const char *name, gguf_file **out,
                          char *err, size_t errlen);
void gguf_close(gguf_file *f);     /* NULL is fine; every view dies with it */

const gguf_kv     *gguf_find_kv(const gguf_file *f, const char *key);       /* NULL if absent */
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);  /* NULL if absent */
bool gguf_str_eq(gguf_str s, const char *c);

/* Typed getters: KVLM_OK; KVLM_ERR_FORMAT (message names the key) if present with a
 * wrong type; KVLM_ERR_INVALID if absent (message "<file>: key not found: '<key>'"). */
kvlm_err gguf_get_int(const gguf_file *f, const char *key, int64_t *out, char *err, size_t errlen);   /* any integer type; u64 > INT64_MAX is a format error */
kvlm_err gguf_get_float(const gguf_file *f, const char *key, double *out, char *err, size_t errlen);  /* f32/f64, also integers */
kvlm_err gguf_get_bool(const gguf_file *f, const char *key, bool *out, char *err, size_t errlen);
kvlm_err gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, char *err, size_t errlen);
kvlm_err gguf_get_arr(const gguf_file *f, const char *key, const gguf_kv **out, char *err, size_t errlen);   /* must be an array */

/* Added: element i of a numeric array kv (any integer type incl. bool / any float type).
 * false if kv is not such an array, i is out of range, or a u64 does not fit int64. */
bool gguf_arr_get_int(const gguf_kv *kv, uint64_t i, int64_t *out);
bool gguf_arr_get_float(const gguf_kv *kv, uint64_t i, double *out);

const char *gguf_vtype_name(gguf_vtype t);   /* "uint8" ... "float64"; "unknown" otherwise */

#endif
