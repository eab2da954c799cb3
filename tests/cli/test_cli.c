/* test_cli.c - the kvlm command line as a user meets it: exit codes (0 ok,
 * 1 runtime error, 2 usage), help text, a real answer, and the same greedy
 * text with and without the KV cache. Runs the kvlm binary built next to this
 * test (BUILD/kvlm for BUILD/tests/cli/test_cli); kvlm transcribe's exit codes and stdout. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cJSON.h>
#include "testutil.h"

static char g_kvlm[4096];

/* Runs `kvlm args` (stdin from /dev/null); stdout into out (cap bytes), returns the exit code. */
static int run(const char *args, char *out, size_t cap)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s </dev/null 2>/dev/null", g_kvlm, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = 0, r;
    char sink[4096];
    while ((r = fread(out ? out + n : sink, 1, out ? cap - 1 - n : sizeof sink, p)) > 0)
        if (out) n += r;
    if (out) out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Runs the shell command cmd (stdout and stderr into out, cap bytes), returns its exit code. */
static int run_sh(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void test_usage_errors(void **state)
{
    (void)state;
    char out[65536];
    assert_int_equal(run("", NULL, 0), 2);
    assert_int_equal(run("frobnicate", NULL, 0), 2);
    assert_int_equal(run("run", NULL, 0), 2);                      /* no prompt */
    assert_int_equal(run("run -p hi --bogus", NULL, 0), 2);
    assert_int_equal(run("run -p hi -n", NULL, 0), 2);             /* missing value */
    assert_int_equal(run("run -p hi -n abc", NULL, 0), 2);
    assert_int_equal(run("run -p hi --temp -1", NULL, 0), 2);
    assert_int_equal(run("run -p hi -t 0", NULL, 0), 2);
    assert_int_equal(run("run -p hi --keep -1", NULL, 0), 2);
    assert_int_equal(run("batch -f x --context-shift", NULL, 0), 2);   /* run and chat only */
    assert_int_equal(run("inspect --keep 4", NULL, 0), 2);
    assert_int_equal(run("--help", out, sizeof out), 0);
    assert_non_null(strstr(out, "--no-kv-cache"));
    assert_non_null(strstr(out, "--context-shift"));
    assert_non_null(strstr(out, "--keep N"));
    assert_non_null(strstr(out, "usage: kvlm"));
    assert_int_equal(run("run --help", out, sizeof out), 0);
}

static void test_runtime_errors(void **state)
{
    (void)state;
    assert_int_equal(run("run -m /nonexistent.gguf -p hi", NULL, 0), 1);
    assert_int_equal(run("run -m /etc/passwd -p hi", NULL, 0), 1);   /* not a GGUF */
    assert_int_equal(run("run -p hi -f /nonexistent.txt", NULL, 0), 1);
    /* KIVI K quantizes spans of 64 positions: a residual group of 32 cannot hold one */
    assert_int_equal(run("run -p hi -n 1 --cache-type-k kivi4 --kv-residual 32", NULL, 0), 1);
    assert_int_equal(run("run -p hi -n 1 --cache-type-k kivi4 --kv-residual 64", NULL, 0), 0);
    assert_int_equal(run("run -p hi -n 1 --cache-type-v kivi4 --kv-residual 32", NULL, 0), 0);   /* KIVI V alone */
}

static void test_answers_and_cache_equivalence(void **state)
{
    (void)state;
    const char *model = test_model_path();
    if (!model) skip();
    char args[4096], a[65536], b[65536];
    snprintf(args, sizeof args, "run -m '%s' --raw -p 'The capital of France is' --temp 0 -n 24 -t 2", model);
    assert_int_equal(run(args, a, sizeof a), 0);
    assert_non_null(strstr(a, "Paris"));
    snprintf(args, sizeof args,
             "run -m '%s' --raw -p 'The capital of France is' --temp 0 -n 24 -t 2 --no-kv-cache", model);
    assert_int_equal(run(args, b, sizeof b), 0);
    assert_string_equal(a, b);

    /* chat template + sampling with a seed: same seed, same text */
    snprintf(args, sizeof args, "run -m '%s' -p 'Name a color.' -n 16 --seed 42 --temp 0.9 -t 2", model);
    assert_int_equal(run(args, a, sizeof a), 0);
    assert_int_equal(run(args, b, sizeof b), 0);
    assert_true(strlen(a) > 1);
    assert_string_equal(a, b);
}

/* -m NAME: a known model's cached path; an unknown name is a clear error (exit 1). */
/* A full context: run stops (as before) unless --context-shift; chat shifts unless
 * --no-context-shift. --stats says how many shifts there were. */
static void test_context_shift(void **state)
{
    (void)state;
    const char *model = test_model_path();
    if (!model) skip();
    static char out[65536];
    char cmd[8192];
    const char *gen = "-c 64 -n 80 --temp 0 -t 2 --stats";   /* ~35 prompt tokens + 80: 2 shifts */
    snprintf(cmd, sizeof cmd, "%s run -m '%s' -p 'Tell me a long story.' %s 2>&1 </dev/null", g_kvlm, model, gen);
    assert_int_equal(run_sh(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "context full (64 tokens), stopping"));
    snprintf(cmd, sizeof cmd, "%s run -m '%s' -p 'Tell me a long story.' %s --context-shift --keep 4 2>&1 </dev/null",
             g_kvlm, model, gen);
    assert_int_equal(run_sh(cmd, out, sizeof out), 0);
    assert_null(strstr(out, "context full"));
    assert_non_null(strstr(out, "context shifts "));
    snprintf(cmd, sizeof cmd, "echo 'Tell me a long story.' | %s chat -m '%s' %s 2>&1", g_kvlm, model, gen);
    assert_int_equal(run_sh(cmd, out, sizeof out), 0);
    assert_null(strstr(out, "context full"));
    assert_non_null(strstr(out, "context shifts "));
    snprintf(cmd, sizeof cmd, "echo 'Tell me a long story.' | %s chat -m '%s' %s --no-context-shift 2>&1", g_kvlm,
             model, gen);
    assert_int_equal(run_sh(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "context full (64 tokens), stopping"));
}

static void test_model_names(void **state)
{
    (void)state;
    char cmd[8192], out[65536];
    snprintf(cmd, sizeof cmd, "%s run -m nosuchmodel -p hi 2>&1 </dev/null", g_kvlm);
    assert_int_equal(run_sh(cmd, out, sizeof out), 1);
    assert_non_null(strstr(out, "'nosuchmodel' is neither a known model (smollm2, whisper, gemma3) nor a file"));
    /* -m smollm2 is the cached default (only when the tests run on it: no fetch here) */
    const char *model = test_model_path();
    const char *env = getenv("KVLM_MODEL");
    if (!model || (env && *env)) skip();
    char a[65536], b[65536], args[4200];
    assert_int_equal(run("run -m smollm2 --raw -p 'The capital of France is' --temp 0 -n 6 -t 2", a, sizeof a), 0);
    snprintf(args, sizeof args, "run -m '%s' --raw -p 'The capital of France is' --temp 0 -n 6 -t 2", model);
    assert_int_equal(run(args, b, sizeof b), 0);
    assert_string_equal(a, b);
    assert_non_null(strstr(a, "Paris"));
}

/* -m gemma3 names the cached Gemma 3 file in every command. KVLM_CACHE points at a temp
 * dir holding a link to it, so nothing is fetched; each command must open that path and
 * run (exit 0), never say "not a known model" or fetch. serve gets SIGTERM once it has
 * written its port file (listening: the model loaded), and must then exit 0. */
static void test_model_name_gemma3(void **state)
{
    (void)state;
    const char *g = test_gemma3_path();
    if (!g) skip();
    char *dir = test_make_tmpdir("kvlm_gemma3");
    assert_non_null(dir);
    char link[4200], txt[4200];
    snprintf(link, sizeof link, "%s/gemma-3-270m-q4_k_m.gguf", dir);
    assert_int_equal(symlink(g, link), 0);
    snprintf(txt, sizeof txt, "%s/t.txt", dir);
    FILE *f = fopen(txt, "w");
    assert_non_null(f);
    fputs("The capital of France is Paris. The capital of Italy is Rome.\n", f);
    fclose(f);
    char jsonl[4200];
    snprintf(jsonl, sizeof jsonl, "%s/p.jsonl", dir);
    f = fopen(jsonl, "w");
    assert_non_null(f);
    fputs("{\"prompt\": \"The capital of France is\"}\n", f);
    fclose(f);
    char cmds[7][4400];
    snprintf(cmds[0], sizeof cmds[0], "run -m gemma3 -p hi -n 1 --raw -t 2");
    snprintf(cmds[1], sizeof cmds[1], "chat -m gemma3 -n 1 -t 2");
    snprintf(cmds[2], sizeof cmds[2], "batch -m gemma3 -f %s -n 1 -t 2", jsonl);
    snprintf(cmds[3], sizeof cmds[3], "inspect -m gemma3");
    snprintf(cmds[4], sizeof cmds[4], "bench -m gemma3 -p 8 -n 1 -r 1 -d 0 -t 2");
    snprintf(cmds[5], sizeof cmds[5], "perplexity -m gemma3 -f %s -c 8 --chunks 1 -t 2", txt);
    snprintf(cmds[6], sizeof cmds[6], "serve -m gemma3 --port 0 --port-file %s/port -t 2", dir);
    for (int i = 0; i < 7; i++) {
        static char cmd[40000], out[65536];
        if (i < 6)
            snprintf(cmd, sizeof cmd, "KVLM_CACHE='%s' timeout --preserve-status 10 %s %s 2>&1 </dev/null", dir, g_kvlm,
                     cmds[i]);
        else   /* up to 60 s for the port file (the sanitizer build loads slowly), then SIGTERM */
            snprintf(cmd, sizeof cmd, "KVLM_CACHE='%s' %s %s 2>&1 </dev/null & p=$!; "
                     "for i in $(seq 600); do [ -s '%s/port' ] && break; kill -0 $p 2>/dev/null || break; sleep 0.1; done; "
                     "kill -TERM $p 2>/dev/null; wait $p; rc=$?; [ -s '%s/port' ] || { echo 'no port file'; rc=99; }; exit $rc",
                     dir, g_kvlm, cmds[i], dir, dir);
        int rc = run_sh(cmd, out, sizeof out);
        if (strstr(out, "known model") || strstr(out, "fetch") || rc != 0)
            fail_msg("kvlm %s: exit %d: %s", cmds[i], rc, out);
    }
    test_rm_tree(dir);
    free(dir);
}

/* The sliding window made visible: inspect's window lines, their figures from the
 * block arithmetic done here (f16, 16384 bytes per layer and block of 16: at 32,768
 * tokens 3 full layers x 2048 blocks + 15 window layers x 32 blocks = 103.5 MiB,
 * 18 x 2048 = 576.0 MiB without), and --stats' per-group line. */
static void test_gemma3_window_accounting(void **state)
{
    (void)state;
    const char *g = test_gemma3_path();
    if (!g) skip();
    static char args[8192], out[65536];
    snprintf(args, sizeof args, "inspect -m '%s'", g);
    assert_int_equal(run(args, out, sizeof out), 0);
    assert_non_null(strstr(out, "sliding window 512 on 15 of 18 layers"));
    const double full = 18.0 * 2048 * 16384 / 1048576.0, win = (3.0 * 2048 + 15.0 * 32) * 16384 / 1048576.0;
    char want[128];
    snprintf(want, sizeof want, "%.1f MiB", win);
    const char *with = strstr(out, "with the window"), *without = strstr(out, "without (every layer)");
    assert_non_null(with);
    assert_non_null(without);
    assert_non_null(strstr(with, want));
    snprintf(want, sizeof want, "%.1f MiB", full);
    assert_non_null(strstr(without, want));
    /* 700 tokens: the full group holds ceil(n/16) blocks, each window table
       ceil(n/16) - floor((n + 1 - 512) / 16) */
    static char cmd[16384];
    snprintf(cmd, sizeof cmd, "head -c 3000 /usr/share/common-licenses/GPL-3 > /tmp/kvlm_gw.txt && "
             "%s run -m '%s' -f /tmp/kvlm_gw.txt --raw -n 1 --temp 0 -t 2 --stats 2>&1 >/dev/null", g_kvlm, g);
    assert_int_equal(run_sh(cmd, out, sizeof out), 0);
    long long n_pos = 0, fb = -1, wb = -1;
    const char *kc = strstr(out, "kv cache");
    assert_non_null(kc);
    assert_int_equal(sscanf(kc, "kv cache %lld tokens", &n_pos), 1);
    const char *kg = strstr(out, "kv groups");
    assert_non_null(kg);
    assert_int_equal(sscanf(kg, "kv groups full attention: 3 layers, %lld blocks = %*d bytes; sliding window 512: "
                                "15 layers, %lld blocks", &fb, &wb), 2);
    assert_true(n_pos > 512);
    const long long nb = (n_pos + 15) / 16;
    assert_int_equal(fb, nb);
    assert_int_equal(wb, 5 * (nb - (n_pos + 1 - 512) / 16));
    unlink("/tmp/kvlm_gw.txt");
}

static void test_chat_reuses_the_cache(void **state)
{
    (void)state;
    const char *model = test_model_path();
    if (!model) skip();
    char cmd[8192], out[65536];
    snprintf(cmd, sizeof cmd,
             "printf 'Hi!\\nWhat is 2+2?\\n' | %s chat -m '%s' --temp 0 -n 12 -t 2 --stats 2>&1 >/dev/null",
             g_kvlm, model);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    assert_int_equal(pclose(p), 0);
    /* second turn: the whole first exchange came from the cache */
    const char *t2 = strstr(out, "[turn:");
    assert_non_null(t2);
    t2 = strstr(t2 + 1, "[turn:");
    assert_non_null(t2);
    long prompt = 0, reused = 0;
    assert_int_equal(sscanf(t2, "[turn: %ld prompt tokens, %ld reused", &prompt, &reused), 2);
    assert_true(reused > 30);
    assert_true(prompt - reused < 20);   /* only the new user turn is prefilled */
}

/* kvlm batch: prompts sharing a long system message; the shared part is computed
 * once (cached_tokens from the second prompt on) and every text equals what
 * `kvlm run` prints for that prompt alone. */
static void test_batch_shares_the_prefix(void **state)
{
    (void)state;
    const char *model = test_model_path();
    if (!model) skip();
    static const char *sys = "You answer questions about the solar system in one short sentence. "
                             "Be precise, prefer numbers, and say when something is unknown. "
                             "The planets are Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus and Neptune.";
    static const char *q[] = { "Which planet is largest?", "Which planet is closest to the Sun?",
                               "How many moons does Mars have?" };
    char path[] = "/tmp/kvlm_batch_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    for (int i = 0; i < 3; i++) fprintf(f, "{\"system\": \"%s\", \"prompt\": \"%s\"}\n\n", sys, q[i]);
    fclose(f);
    char args[4096], out[65536], one[65536];
    snprintf(args, sizeof args, "batch -m '%s' -f %s --temp 0 -n 12 -t 2", model, path);
    assert_int_equal(run(args, out, sizeof out), 0);
    unlink(path);
    char *line = out;
    for (int i = 0; i < 3; i++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        assert_int_equal(cJSON_GetObjectItem(j, "index")->valueint, i);
        int cached = cJSON_GetObjectItem(j, "cached_tokens")->valueint;
        int prompt = cJSON_GetObjectItem(j, "prompt_tokens")->valueint;
        if (i == 0) assert_int_equal(cached, 0);
        else assert_true(cached >= 48 && cached < prompt);
        snprintf(args, sizeof args, "run -m '%s' --system '%s' -p '%s' --temp 0 -n 12 -t 2", model, sys, q[i]);
        assert_int_equal(run(args, one, sizeof one), 0);
        size_t n = strlen(one);
        assert_true(n > 0 && one[n - 1] == '\n');
        one[n - 1] = '\0';   /* run ends the text with a newline */
        assert_string_equal(cJSON_GetObjectItem(j, "text")->valuestring, one);
        cJSON_Delete(j);
        line = nl + 1;
    }
    /* a bad line is an error for that line only: exit 1, the others still run */
    char bad[] = "/tmp/kvlm_batch_XXXXXX";
    fd = mkstemp(bad);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fprintf(f, "{\"prompt\": \"Hi\"}\nnot json\n{\"prompt\": 5}\n");
    fclose(f);
    snprintf(args, sizeof args, "batch -m '%s' -f %s --temp 0 -n 2 -t 2", model, bad);
    assert_int_equal(run(args, out, sizeof out), 1);
    unlink(bad);
    assert_non_null(strstr(out, "{\"index\":0,\"text\""));
    assert_non_null(strstr(out, "{\"index\":1,\"error\""));
    assert_non_null(strstr(out, "{\"index\":2,\"error\""));
}

/* run --parallel 3: three forks of one prefill; sequence i equals a run alone
 * with seed + i. */
static void test_parallel_forks(void **state)
{
    (void)state;
    const char *model = test_model_path();
    if (!model) skip();
    char args[4096], out[65536], one[65536];
    snprintf(args, sizeof args, "run -m '%s' -p 'Name a fruit.' --parallel 3 --seed 7 --temp 1.0 -n 10 -t 2", model);
    assert_int_equal(run(args, out, sizeof out), 0);
    for (int i = 0; i < 3; i++) {
        char head[64];
        snprintf(head, sizeof head, "--- sequence %d (seed %d) ---\n", i, 7 + i);
        char *h = strstr(out, head);
        assert_non_null(h);
        h += strlen(head);
        char *end = strstr(h, "\n--- sequence");
        size_t n = end ? (size_t)(end - h) : strlen(h) - 1;   /* the last ends with "\n" */
        snprintf(args, sizeof args, "run -m '%s' -p 'Name a fruit.' --seed %d --temp 1.0 -n 10 -t 2", model, 7 + i);
        assert_int_equal(run(args, one, sizeof one), 0);
        assert_int_equal(strlen(one) - 1, n);
        assert_memory_equal(one, h, n);
    }
}

/* kvlm transcribe: usage and runtime exit codes; with the cached Whisper model, stdout
 * holds the transcript alone, one line per segment: with f16 weights the text of
 * faster-whisper's transcribe() (CTranslate2 float32, beam 1, its default fallback) in
 * tests/data/whisper/ref/us160_fox.json. No model is fetched: those checks skip without it. */
static void test_transcribe(void **state)
{
    (void)state;
    char out[65536], args[4096];
    assert_int_equal(run("transcribe --help", out, sizeof out), 0);
    assert_non_null(strstr(out, "usage: kvlm transcribe"));
    assert_int_equal(run("transcribe", NULL, 0), 2);                      /* no file */
    assert_int_equal(run("transcribe --beam 0 a.wav", NULL, 0), 2);
    assert_int_equal(run("transcribe /nonexistent.wav", NULL, 0), 1);     /* read before the model */
    const char *cache = getenv("KVLM_CACHE"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char bin[4096];
    if (cache && *cache) snprintf(bin, sizeof bin, "%s/whisper-tiny.en/model.bin", cache);
    else if (xdg && *xdg) snprintf(bin, sizeof bin, "%s/kvlm/whisper-tiny.en/model.bin", xdg);
    else snprintf(bin, sizeof bin, "%s/.cache/kvlm/whisper-tiny.en/model.bin", home ? home : ".");
    if (access(bin, R_OK) != 0) skip();
    char *js = test_read_file(test_data_path("whisper/ref/us160_fox.json"), NULL);
    assert_non_null(js);
    cJSON *ref = cJSON_Parse(js);
    free(js);
    const cJSON *segs = cJSON_GetObjectItem(cJSON_GetObjectItem(ref, "transcribe"), "beam1_fallback_notimestamps");
    assert_int_equal(cJSON_GetArraySize(segs), 1);
    const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(segs, 0), "text"));
    assert_non_null(text);
    char want[1024];
    snprintf(want, sizeof want, "%s\n", text + (text[0] == ' '));
    const char *clip = test_data_path("whisper/clips/us160_fox.wav");
    snprintf(args, sizeof args, "transcribe '%s' --weights f16 -t 2", clip);
    assert_int_equal(run(args, out, sizeof out), 0);
    assert_string_equal(out, want);
    /* the default weights (q8_0): one line of text, nothing else */
    snprintf(args, sizeof args, "transcribe -t 2 '%s'", clip);
    assert_int_equal(run(args, out, sizeof out), 0);
    char *nl = strchr(out, '\n');
    assert_non_null(nl);
    assert_string_equal(nl + 1, "");
    assert_true(nl - out > 20 && strstr(out, "lazy dog"));
    cJSON_Delete(ref);
}

int main(int argc, char **argv)
{
    (void)argc;
    /* BUILD/tests/cli/test_cli -> BUILD/kvlm */
    snprintf(g_kvlm, sizeof g_kvlm, "%s", argv[0]);
    char *cut = strstr(g_kvlm, "/tests/cli/");
    if (cut) strcpy(cut, "/kvlm");
    else snprintf(g_kvlm, sizeof g_kvlm, "build/kvlm");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_runtime_errors),
        cmocka_unit_test(test_answers_and_cache_equivalence),
        cmocka_unit_test(test_context_shift),
        cmocka_unit_test(test_model_names),
        cmocka_unit_test(test_model_name_gemma3),
        cmocka_unit_test(test_gemma3_window_accounting),
        cmocka_unit_test(test_chat_reuses_the_cache),
        cmocka_unit_test(test_batch_shares_the_prefix),
        cmocka_unit_test(test_parallel_forks),
        cmocka_unit_test(test_transcribe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
