/* kv_shift.h - context shift: drop positions from the middle of a sequence and move
 * the ones after them down, re-rotating their K instead of recomputing it (what
 * llama.cpp's context shift does with llama_memory_seq_rm + llama_memory_seq_add).
 * Room: kv. May touch: kv_seq, kv_pool, kern/attn (reading K as attention reads it),
 * core (errors). Knows nothing of RoPE or the model: the caller's callback turns one
 * position's f32 K row into the same key's row at another position (nn/rope_shift.h).
 *
 *   before:  [0, keep) kept | [keep, keep + discard) dropped | [keep + discard, n_pos) moved
 *   after:   [0, keep) kept | [keep, n_pos - discard) the moved positions, delta = -discard
 *
 * Units. discard is a multiple of 16, so a moved position keeps its slot: old block
 * i + discard / 16 becomes block i, and its V moves as bytes. A KIVI pool (res_tokens
 * R) quantizes K over spans of 64 positions and keeps the newest group of R in f32,
 * so there keep and discard are multiples of R: groups map onto groups, spans onto
 * spans, the f32 residual onto the new current group, and no span mixes kept and
 * moved positions.
 *
 * Block by block (kb = keep / 16, d = discard / 16, r = keep % 16):
 *   blocks [0, kb)   untouched: the same ids, still shared or published
 *   block kb, r > 0  a block of ours: slots [0, r) as they were (old block kb, rewritten
 *                    in place if we hold it alone, else copied), slots [r, 16) moved
 *                    from old block kb + d slot by slot
 *   the others       old block j + d, rewritten in place if the sequence holds it alone
 *                    and unpublished, else copied to a fresh block first
 * K of a moved position: read as attention reads it (attn_k_value), rotated by the
 * callback with delta = -discard, stored again in the pool's type: f16 rounds once
 * more, q8/q4/KIVI requantize once more (q8/q4 K is stored in a Hadamard basis; the
 * callback knows that, this file does not). KIVI: the current group's positions are
 * rotated in the f32 residual (attention reads them there) and the pool's copies of
 * them are stored from those rotated rows.
 * V: moved byte for byte, never decoded.
 *
 * Publishing. The bitwise contract (a cached path gives the bits of recomputing) does
 * not hold for rotated K, so the sequence gets no_publish: kv_seq_publish does nothing
 * and none of its blocks reaches the prefix index, or a tier (they take published
 * blocks only). The kept full blocks stay published; n_keyed and n_published are cut
 * to them. The owner may clear no_publish once the sequence is truncated to at most
 * `keep` positions: what is left is then bitwise what it was before any shift.
 *
 * Memory. Blocks are processed from the tail: each copy is allocated after the
 * previous source was released, and a released tail block is the first the pool
 * evicts (its children are gone), so a sequence holding its blocks alone needs one
 * free block at most, published blocks or not. The whole plan is checked against
 * kv_pool_available before anything changes: KVLM_ERR_BUDGET leaves the sequence as
 * it was. */
#ifndef KVLM_KV_KV_SHIFT_H
#define KVLM_KV_KV_SHIFT_H

#include <stdint.h>
#include "kvlm.h"
#include "kv/kv_pool.h"
#include "kv/kv_seq.h"

/* Rotates k: [n_head_kv * head_dim] f32, one position's K of layer il as the pool
 * stores it (before quantization), from position p to position p + delta. */
typedef void (*kv_shift_rotate_fn)(void *user, int64_t il, float *k, int64_t delta);

/* The shift of a sequence of n_pos positions that keeps n_keep: llama.cpp's rule
 * (drop half of what follows the kept positions) in this file's units:
 *   *keep    = n_keep rounded up to the unit (1; a KIVI pool: R)
 *   *discard = (n_pos - *keep) / 2 rounded to the nearest multiple of G (16; KIVI: R),
 *              at least G, at most n_pos - *keep rounded down to G
 * KVLM_ERR_CONTEXT_FULL when fewer than G positions follow *keep (nothing can go). */
kvlm_err kv_shift_plan(const kv_pool *p, int64_t n_pos, int64_t n_keep, int64_t *keep, int64_t *discard,
                       char *err, size_t errlen);

/* Drops positions [keep, keep + discard) of s and moves [keep + discard, n_pos) down
 * by discard, as above; keep and discard in kv_shift_plan's units (KVLM_ERR_INVALID
 * otherwise). Sets s->no_publish. KVLM_ERR_BUDGET or KVLM_ERR_NOMEM: s is unchanged
 * (but for blocks reserved past n_pos, released first). Should an allocation fail
 * midway, which the check rules out, s keeps only its first keep / 16 blocks (n_pos
 * says) and KVLM_ERR_BUDGET is returned. */
kvlm_err kv_shift(kv_seq *s, int64_t keep, int64_t discard, kv_shift_rotate_fn rotate, void *user, char *err,
                  size_t errlen);

#endif
