/* test_cli_bench.c - `kvlm bench` as a script meets it: exit codes, a tiny
 * run whose --json output parses and carries the documented keys, and the
 * latency-curve mode's CSV and SVG files. Not a benchmark: the sizes are the
 * smallest that exercise every path (a few seconds; 1 thread, so a busy
 * machine cannot starve a spinning worker). Runs the kvlm binary built next to
 * this test (BUILD/kvlm for BUILD/tests/cli/test_cli_bench). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "testproc.h"
#include "testutil.h"

static char g_kvlm[4096];

/* Runs `kvlm bench args`; stdout into out (cap bytes), returns the exit code. */
static int bench(const char *args, char *out, size_t cap)
{
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "%s bench %s </dev/null 2>/dev/null", g_kvlm, args);
    int rc = test_proc_run(cmd, out, cap);
    assert_true(rc >= 0);
    return rc;
}

static void test_usage_and_runtime_errors(void **state)
{
    (void)state;
    char out[16384];
    assert_int_equal(bench("--help", out, sizeof out), 0);
    assert_non_null(strstr(out, "usage: kvlm bench"));
    assert_non_null(strstr(out, "--no-kv-cache-curve"));
    assert_int_equal(bench("--bogus", NULL, 0), 2);
    assert_int_equal(bench("-r 0", NULL, 0), 2);
    assert_int_equal(bench("-r", NULL, 0), 2);                 /* missing value */
    assert_int_equal(bench("-d 0,x", NULL, 0), 2);
    assert_int_equal(bench("-d ''", NULL, 0), 2);
    assert_int_equal(bench("-p 0 -n 0", NULL, 0), 2);          /* nothing to measure */
    assert_int_equal(bench("--plot x.svg", NULL, 0), 2);       /* --plot needs the curve mode */
    assert_int_equal(bench("--cache-type q1", NULL, 0), 2);
    assert_int_equal(bench("-m /nonexistent.gguf -r 1 -p 8 -n 0", NULL, 0), 1);
    assert_int_equal(bench("-m /etc/passwd -r 1 -p 8 -n 0", NULL, 0), 1);
}

static const cJSON *get(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) fail_msg("missing key '%s'", key);
    return v;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = get(o, key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static void test_json_output(void **state)
{
    (void)state;
    const char *model = test_model_path();
    if (!model) skip();
    char args[4096];
    static char out[1 << 16];
    snprintf(args, sizeof args, "-m '%s' -t 1 -r 2 -p 32 -n 8 --depths 0,16 --json", model);
    assert_int_equal(bench(args, out, sizeof out), 0);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    assert_string_equal(get(j, "engine")->valuestring, "kvlm");
    assert_string_equal(get(j, "model")->valuestring, model);
    assert_string_equal(get(j, "kv_type")->valuestring, "f16");
    assert_true(num(j, "threads") == 1);
    assert_true(num(j, "reps") == 2);
    assert_true(num(j, "peak_rss_bytes") > 50e6);   /* at least the touched weights */
    const cJSON *res = get(j, "results");
    assert_true(cJSON_IsArray(res));
    assert_int_equal(cJSON_GetArraySize(res), 3);   /* pp32, tg8 @ d0, tg8 @ d16 */
    const char *names[] = { "pp32", "tg8", "tg8" };
    const double depths[] = { 0, 0, 16 }, ns[] = { 32, 8, 8 };
    for (int i = 0; i < 3; i++) {
        const cJSON *r = cJSON_GetArrayItem(res, i);
        assert_string_equal(get(r, "test")->valuestring, names[i]);
        assert_true(num(r, "depth") == depths[i]);
        assert_true(num(r, "n") == ns[i]);
        assert_true(num(r, "reps") == 2);
        double med = num(r, "median_tps"), lo = num(r, "min_tps"), hi = num(r, "max_tps");
        assert_true(lo > 0 && lo <= med && med <= hi);
        assert_true(num(r, "stddev_tps") >= 0);
        const cJSON *s = get(r, "samples_tps");
        assert_true(cJSON_IsArray(s));
        assert_int_equal(cJSON_GetArraySize(s), 2);
    }
    cJSON_Delete(j);

    /* the table form names every test */
    snprintf(args, sizeof args, "-m '%s' -t 1 -r 1 -p 16 -n 4 -d 0", model);
    assert_int_equal(bench(args, out, sizeof out), 0);
    assert_non_null(strstr(out, "pp16"));
    assert_non_null(strstr(out, "tg4 @ d0"));
    assert_non_null(strstr(out, "peak RSS"));
}

static void test_curve_files(void **state)
{
    (void)state;
    const char *model = test_model_path();
    if (!model) skip();
    char dir[] = "/tmp/kvlm_bench_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char svg[512], csv[512], args[4096];
    static char out[1 << 16];
    snprintf(svg, sizeof svg, "%s/curve.svg", dir);
    snprintf(csv, sizeof csv, "%s/curve.csv", dir);
    snprintf(args, sizeof args, "-m '%s' -t 1 --no-kv-cache-curve 12 --plot %s", model, svg);
    assert_int_equal(bench(args, out, sizeof out), 0);
    assert_non_null(strstr(out, "identical on both paths"));

    size_t len;
    char *text = test_read_file(csv, &len);
    assert_non_null(text);
    assert_int_equal(strncmp(text, "position,ms_cached,ms_nocache\n", 30), 0);
    int rows = 0;
    for (char *line = strchr(text, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
        long pos;
        double a, b;
        assert_int_equal(sscanf(line + 1, "%ld,%lf,%lf", &pos, &a, &b), 3);
        assert_int_equal(pos, rows);
        assert_true(a > 0 && b > 0);
        rows++;
    }
    assert_int_equal(rows, 12);
    free(text);

    text = test_read_file(svg, &len);
    assert_non_null(text);
    assert_non_null(strstr(text, "<svg"));
    assert_non_null(strstr(text, "</svg>"));
    const char *p = strstr(text, "<polyline");
    assert_non_null(p);
    assert_non_null(strstr(p + 1, "<polyline"));   /* one line per path */
    free(text);

    /* --json carries both series */
    snprintf(args, sizeof args, "-m '%s' -t 1 --no-kv-cache-curve 6 --json", model);
    assert_int_equal(bench(args, out, sizeof out), 0);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    assert_true(cJSON_IsTrue(get(j, "identical_tokens")));
    assert_int_equal(cJSON_GetArraySize(get(j, "ms_cached")), 6);
    assert_int_equal(cJSON_GetArraySize(get(j, "ms_nocache")), 6);
    cJSON_Delete(j);

    unlink(svg);
    unlink(csv);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    (void)argc;
    test_proc_sibling(argv[0], "kvlm", g_kvlm, sizeof g_kvlm);   /* BUILD/tests/cli/x -> BUILD/kvlm */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_and_runtime_errors),
        cmocka_unit_test(test_json_output),
        cmocka_unit_test(test_curve_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
