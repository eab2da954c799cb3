/* whisper_stub.c - TEMPORARY (branch h-upload): placeholders for the Whisper calls of
 * include/kvlm.h that `kvlm serve --whisper` uses, so the server links before their
 * implementation lands. DELETE THIS FILE when merging the implementation of
 * kvlm_whisper_*, kvlm_wjob_*, kvlm_audio_load_memory and
 * kvlm_transcribe_default_params (with both in the library, the link either fails
 * with duplicate symbols or may pick these).
 * Room: engine. May touch: core/err. kvlm_whisper_load always fails, naming this
 * file, so nothing else here is ever reached. */
#include "core/err.h"

#include <stdlib.h>
#include <string.h>

kvlm_whisper_params kvlm_whisper_default_params(void) { return (kvlm_whisper_params){ 0 }; }

kvlm_err kvlm_whisper_load(const char *path, const kvlm_whisper_params *params, kvlm_whisper **out, char *err,
                           size_t errlen)
{
    (void)path; (void)params;
    *out = NULL;
    return err_set(err, errlen, KVLM_ERR_UNSUPPORTED,
                   "this build has no Whisper implementation yet (src/engine/whisper_stub.c)");
}

void kvlm_whisper_free(kvlm_whisper *w) { (void)w; }

void kvlm_whisper_get_info(const kvlm_whisper *w, kvlm_whisper_info *out)
{
    (void)w;
    memset(out, 0, sizeof *out);
}

kvlm_err kvlm_audio_load_memory(const void *data, size_t len, float **samples, int64_t *n, char *err, size_t errlen)
{
    (void)data; (void)len;
    *samples = NULL;
    *n = 0;
    return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "no audio decoder in this build (src/engine/whisper_stub.c)");
}

kvlm_transcribe_params kvlm_transcribe_default_params(void) { return (kvlm_transcribe_params){ .beam = 1 }; }

kvlm_err kvlm_wjob_create(kvlm_whisper *w, const float *samples, int64_t n, const kvlm_transcribe_params *params,
                          kvlm_wjob **out, char *err, size_t errlen)
{
    (void)w; (void)samples; (void)n; (void)params;
    *out = NULL;
    return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "no Whisper in this build");
}

kvlm_err kvlm_wjob_step(kvlm_whisper *w, kvlm_wjob *const *jobs, int n_jobs, char *err, size_t errlen)
{
    (void)w; (void)jobs; (void)n_jobs;
    return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "no Whisper in this build");
}

bool kvlm_wjob_done(const kvlm_wjob *job) { (void)job; return true; }

kvlm_err kvlm_wjob_error(const kvlm_wjob *job, char *err, size_t errlen)
{
    (void)job;
    return err_set(err, errlen, KVLM_ERR_UNSUPPORTED, "no Whisper in this build");
}

kvlm_transcript *kvlm_wjob_take(kvlm_wjob *job) { (void)job; return NULL; }

void kvlm_wjob_free(kvlm_wjob *job) { (void)job; }
