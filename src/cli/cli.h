/* cli.h - shared between the kvlm subcommands. Room: cli. */
#ifndef KVLM_CLI_CLI_H
#define KVLM_CLI_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include "kvlm.h"

typedef struct cli_opts {
    const char *model, *model_pos, *prompt, *prompt_file, *system;
    long long n_predict;
    int n_parallel;           /* run --parallel N: forked sequences from one prefill */
    kvlm_ctx_params ctx;
    kvlm_sampler_params samp;
    bool stats, raw, help;
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
/* What -m names: m without '/' that is a known model ("smollm2", "whisper") gives its
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
