/* ct2.h - a zero-copy reader for CTranslate2 model.bin files (binary versions 1..6,
 * little-endian), the format of faster-whisper's model directories.
 * Room: model. May touch: core (errors), kern/quant (fp16/bf16 widening), model/fmap (mmap), libc.
 * Knows nothing of Whisper: it hands
 * out named variables; model/whisper_model.c gives them meaning.
 *
 * Layout (../shared/WHISPER.md section 1; CTranslate2 model_spec.py / model.cc):
 *
 *   u32 binary_version (1..6)
 *   [version >= 2] str spec_name, u32 spec_revision
 *   u32 num_variables
 *   repeat: str name, u8 rank, u32 dims[rank],
 *           [version >= 4] u8 dtype_id, u32 num_bytes
 *           [version <  4] u8 item_size, u32 num_elements
 *           u8 data[num_bytes]                 row-major, NOT aligned in the file
 *   [version >= 3] u32 num_aliases, repeat: str alias, str target
 *   str = u16 length including a trailing NUL, the bytes, the NUL
 *
 * The file is hostile input: ct2_open validates every length, count, rank,
 * dimension, dtype and byte count before anything uses it, and on success:
 *   - num_variables >= 1 (a file with none is rejected);
 *   - [version < 4] item_size 4, 2, 1 means float32, int16, int8 (CTranslate2's
 *     get_dtype_from_item_size) and num_elements == prod(dims);
 *   - every name and every variable's data lies inside the file;
 *   - names are unique, non-empty, NUL-terminated at their stated length and
 *     contain no other NUL;
 *   - rank <= CT2_MAX_RANK, every dim >= 1 (a rank-0 variable is a scalar of one
 *     element), the element count and num_bytes fit int64 and
 *     num_bytes == prod(dims) * dtype size;
 *   - dtype is one of CT2_F32, CT2_I8, CT2_I16, CT2_I32, CT2_F16, CT2_BF16;
 *   - alias names are non-empty and unique, and differ from every variable name;
 *   - every alias names an existing variable (aliases of aliases are resolved,
 *     cycles rejected); ct2_find resolves aliases, and "X_scale" through an alias
 *     of X as CTranslate2 does;
 *   - the spec name may be empty but obeys the string rules above;
 *   - nothing follows the alias section (trailing bytes: KVLM_ERR_FORMAT).
 * Anything else gives KVLM_ERR_FORMAT ("<file>: offset <byte>: <problem>") or, for a
 * version > 6 or a big-endian host, KVLM_ERR_UNSUPPORTED; nothing leaks; nothing prints.
 *
 * Lifetime: every pointer handed out (names, data, the variable array) is borrowed
 * from the ct2_file and stays valid until ct2_close. Data is raw little-endian and
 * may be unaligned: read it with memcpy or the ct2_get_* helpers, or copy it.
 * A ct2_file is read-only after open and may be shared between threads. */
#ifndef KVLM_MODEL_CT2_H
#define KVLM_MODEL_CT2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kvlm.h"

enum { CT2_MAX_RANK = 8, CT2_MAX_VERSION = 6 };

/* DataType ids of CTranslate2 (include/ctranslate2/types.h) */
typedef enum ct2_dtype { CT2_F32 = 0, CT2_I8 = 1, CT2_I16 = 2, CT2_I32 = 3, CT2_F16 = 4, CT2_BF16 = 5 } ct2_dtype;

typedef struct ct2_var {
    const char *name;          /* NUL-terminated, inside the file */
    uint32_t rank;             /* 0 = scalar */
    int64_t dims[CT2_MAX_RANK];/* dims[0] outermost (row-major); unused = 1 */
    ct2_dtype dtype;
    int64_t n_elem;            /* prod(dims), 1 for a scalar */
    uint64_t nbytes;
    const void *data;          /* unaligned */
    uint64_t offset;           /* file offset of the data, for messages */
} ct2_var;

typedef struct ct2_alias { const char *alias, *target; } ct2_alias;

typedef struct ct2_file {
    const uint8_t *base;
    uint64_t size;
    uint32_t version;
    const char *spec_name;     /* "" when version < 2 */
    uint32_t spec_revision;    /* 0 when version < 2 */
    ct2_var *vars;             /* [n_vars], in file order (sorted by name in real files) */
    int64_t n_vars;
    ct2_alias *aliases;        /* [n_aliases] */
    int64_t n_aliases;
    /* private: */
    char path[256];
    void *map;                 /* mmap base, or NULL for ct2_open_memory */
    size_t map_len;
    int64_t *sorted;           /* indexes of vars sorted by name */
    int64_t *alias_sorted;     /* indexes of aliases sorted by alias name */
    int64_t *alias_var;        /* [n_aliases]: the variable each alias resolves to */
} ct2_file;

size_t ct2_dtype_size(ct2_dtype t);          /* 0 for an unknown id */
const char *ct2_dtype_name(ct2_dtype t);     /* "float32", ... or "unknown" */

/* mmap's path read-only and validates it. On failure *out is NULL. */
kvlm_err ct2_open(const char *path, ct2_file **out, char *err, size_t errlen);
/* Validates data[0..size) in place (not copied: it must outlive the file);
 * name is used in messages. */
kvlm_err ct2_open_memory(const void *data, size_t size, const char *name, ct2_file **out,
                         char *err, size_t errlen);
void ct2_close(ct2_file *f);   /* NULL is fine */

/* The variable called name (aliases resolved), or NULL. O(log n). */
const ct2_var *ct2_find(const ct2_file *f, const char *name);

/* A rank-0 (or one-element) integer variable as int64 (int8/16/32), or a float
 * one as double: false when absent, not one element, or of another kind. */
bool ct2_get_int(const ct2_file *f, const char *name, int64_t *out);
bool ct2_get_float(const ct2_file *f, const char *name, double *out);

/* Element i of v as float (f32, f16, bf16 widened; integers converted). i < n_elem. */
float ct2_var_float(const ct2_var *v, int64_t i);

#endif
