/* cli.h - shared between the kvlm subcommands. Room: cli. */
#ifndef KVLM_CLI_CLI_H
#define KVLM_CLI_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "kvlm.h"

/* cli_tier.c: the cache tier options, one parser for run, chat and serve. */
typedef struct cli_tier_args {
    kvlm_tier_params p;       /* what the options say; zero: no tiers */
    unsigned given;           /* which options were given (for cli_tier_check) */
} cli_tier_args;
/* argv[*i] is a tier option: 1 (its value taken, *i advanced past it); not one: 0;
 * a bad or missing value: -1 after printing why (prog: "kvlm", "kvlm serve"). */
int  cli_tier_parse(cli_tier_args *t, const char *prog, int argc, char **argv, int *i);
/* After every option: options that need another (--cache-disk needs --cache-dir,
 * --cache-redis-ttl --cache-redis, --cache-write and --cache-compress a tier). 0, or -1
 * after printing why. */
int  cli_tier_check(const cli_tier_args *t, const char *prog);
/* One line per option, its help text starting at column col. */
void cli_tier_usage(FILE *f, int col);
/* --stats: one line per tier of s->cache.tier[] and the prompt tokens loaded from
 * tiers; nothing when there are no tiers. */
void cli_tier_print_stats(FILE *f, const kvlm_stats *s);

typedef struct cli_opts {
    const char *model, *model_pos, *prompt, *prompt_file, *system;
    const char *session;      /* chat --session FILE */
    cli_tier_args tiers;      /* also in ctx.tiers (the private cache's) */
    long long n_predict;
    int n_parallel;           /* run --parallel N: forked sequences from one prefill */
    kvlm_ctx_params ctx;
    kvlm_sampler_params samp;
    bool stats, raw, help;
    bool shift_default;       /* context_shift came from chat's default, not a flag: off for a model
                                 with sliding-window layers, which needs none */
} cli_opts;

int cli_run(const cli_opts *o);
int cli_chat(const cli_opts *o);
int cli_inspect(const cli_opts *o);
int cli_batch(const cli_opts *o);   /* cli_batch.c */
/* cli_gen.c: the model of -m / the positional argument / the cached default;
 * NULL after printing why. */
kvlm_model *cli_load_model(const cli_opts *o);

/* cli_model.c: the cached default model's path (static storage), and a loader
 * of -m's value through cli_model_resolve (NULL: the default, smollm2; NULL after
 * printing the error). */
const char *cli_model_default_path(void);
kvlm_model *cli_model_open(const char *path);
/* What -m names: m without '/' that is a known model ("smollm2", "whisper", "gemma3") gives its
 * cached path (the GGUF file; whisper's directory), fetching it first if it is not
 * cached (scripts/fetch-model.sh NAME beside the binary, progress on stderr); m NULL
 * means the known model kind_default (NULL: smollm2); anything else is returned as the
 * path it is. NULL after printing why: a fetch failed, no fetch script, or a name that
 * is neither known nor an existing file. Static storage per known model. */
const char *cli_model_resolve(const char *m, const char *kind_default);
/* "f16", or "q8/q4" when V differs from K: for reports. buf: at least 16 bytes. */
const char *cli_kv_label(kvlm_kv_type k, kvlm_kv_type v, char *buf, size_t cap);
/* A decimal integer in [lo, hi], the whole string: 0, else -1 (nothing written). */
int cli_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
/* "256M", "1G", "4096", "64k", "1GiB" -> bytes (binary units; what --kv-mem takes):
 * 0, else -1 (malformed, not positive, or over 10^15). */
int cli_parse_size(const char *s, size_t *out);

/* cli_file.c: text and session files (hostile input; errors printed, see there). */
bool  cli_file_utf8_valid(const char *s, size_t n);
/* A file's text (malloc'd, NUL-terminated, *len bytes): NULL if it cannot be read,
 * is over max bytes (why_max says what that means), or holds a NUL byte or invalid UTF-8. */
char *cli_file_read_text(const char *path, size_t max, const char *why_max, size_t *len);
#define CLI_SESSION_MAX_BYTES ((size_t)64 << 20)
typedef struct cli_session {
    kvlm_chat_msg *msgs;      /* [n_msgs]: the system message first if has_system, then
                                 user/assistant turns; contents malloc'd, roles static */
    size_t n_msgs, cap_msgs, n_turns;
    bool has_system;
} cli_session;
/* Loads path into s (zeroed first): 1 loaded (a warning printed if it names another
 * model than model, the model file's base name), 0 no such file (s stays empty),
 * -1 after printing why it is refused (s empty). */
int  cli_file_session_load(const char *path, const char *model, cli_session *s);
/* Writes s to path atomically (temporary file, fsync, rename): 0, or -1 after printing why. */
int  cli_file_session_save(const char *path, const char *model, const cli_session *s);
/* Appends a message (content copied): 0, or -1 out of memory. */
int  cli_file_session_add(cli_session *s, const char *role, const char *content);
void cli_file_session_free(cli_session *s);   /* frees the messages; s is empty after */

/* cli_bench.c: `kvlm bench`, which parses its own options from argv[2..]. */
int cli_bench(int argc, char **argv);
/* cli_perplexity.c: `kvlm perplexity`, likewise. */
int cli_perplexity(int argc, char **argv);
/* cli_serve.c: `kvlm serve`, its own options */
int cli_serve(int argc, char **argv);
/* cli_transcribe.c: `kvlm transcribe`, its own options; `kvlm inspect -m whisper` */
int cli_transcribe(int argc, char **argv);
bool cli_is_whisper_model(const char *m);   /* "whisper" or a directory holding model.bin */
int cli_inspect_whisper(const char *m);

#endif
