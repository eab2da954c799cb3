/* test_kv_tier_disk.c - the disk tier's blob store (kv_tier_disk): round trips,
 * a restart, LRU order within the budget, bad and stale files, an injected full
 * disk, two handles and two processes on one directory, and kill -9 in the
 * middle of a write.
 *
 * Expected contents come from test_blob(): a pure function of (key, length) that the
 * test recomputes, so a torn, mixed-up or stale file fails the comparison. Every
 * test works in its own mkdtemp directory and removes it. Forked children never
 * call cmocka: they report through their exit status. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "kv/kv_tier_disk.h"

/* ---- helpers ------------------------------------------------------------------------ */

static bool blob_ok(uint64_t key, const void *data, size_t len, size_t want_len)
{
    if (len != want_len) return false;
    uint8_t *b = test_blob(key, len);
    bool ok = memcmp(b, data, len) == 0;
    free(b);
    return ok;
}

static void put_blob(kv_disk *d, uint64_t key, size_t len)
{
    char err[256] = "";
    uint8_t *b = test_blob(key, len);
    kvlm_err rc = kv_disk_put(d, key, b, len, err, sizeof err);
    free(b);
    if (rc != KVLM_OK) fail_msg("put %llx: %s", (unsigned long long)key, err);
}

static void get_blob_ok(kv_disk *d, uint64_t key, size_t len)
{
    char err[256] = "";
    void *data;
    size_t got;
    bool miss = true;
    kvlm_err rc = kv_disk_get(d, key, &data, &got, &miss, err, sizeof err);
    if (rc != KVLM_OK) fail_msg("get %llx: %s", (unsigned long long)key, err);
    assert_false(miss);
    assert_true(blob_ok(key, data, got, len));
    free(data);
}

static void get_miss(kv_disk *d, uint64_t key)
{
    char err[256] = "";
    void *data = (void *)1;
    size_t got = 1;
    bool miss = false;
    assert_int_equal(kv_disk_get(d, key, &data, &got, &miss, err, sizeof err), KVLM_ERR_IO);
    assert_true(miss);
    assert_null(data);
    assert_int_equal(got, 0);
    assert_string_equal(err, "miss");
}

static bool file_exists(const char *dir, const char *name)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat sb;
    return lstat(path, &sb) == 0;
}

static bool final_exists(const char *dir, uint64_t key)
{
    char name[21];
    kv_disk_file_name(key, name);
    return file_exists(dir, name);
}

/* The number of directory entries whose name starts with prefix ("" = all). */
static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (!strncmp(de->d_name, prefix, strlen(prefix))) n++;
    }
    closedir(d);
    return n;
}

static void write_file(const char *dir, const char *name, const void *data, size_t len, int64_t age_sec)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    if (age_sec > 0) {
        struct timespec ts[2];
        clock_gettime(CLOCK_REALTIME, &ts[0]);
        ts[0].tv_sec -= age_sec;
        ts[1] = ts[0];
        assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
    }
}

static kv_disk *open_ok(const char *dir, uint64_t budget)
{
    char err[256] = "";
    kv_disk *d = NULL;
    if (kv_disk_open(&d, dir, budget, err, sizeof err) != KVLM_OK) fail_msg("open %s: %s", dir, err);
    return d;
}

/* ---- tests -------------------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    (void)state;
    char *tmp = test_make_tmpdir("kvdisk");
    assert_non_null(tmp);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/a/b/kv", tmp);   /* created with its parents */
    kv_disk *d = open_ok(dir, 1 << 20);
    struct stat sb;
    assert_int_equal(stat(dir, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0700);

    get_miss(d, 42);
    assert_false(kv_disk_has(d, 42));
    put_blob(d, 42, 1000);
    put_blob(d, 0, 0);                       /* key 0 and an empty blob are fine */
    put_blob(d, UINT64_MAX, 4097);
    assert_true(kv_disk_has(d, 42));
    assert_true(final_exists(dir, 42));
    assert_true(file_exists(dir, "000000000000002a.kvb"));
    assert_true(file_exists(dir, "ffffffffffffffff.kvb"));
    get_blob_ok(d, 42, 1000);
    get_blob_ok(d, 0, 0);
    get_blob_ok(d, UINT64_MAX, 4097);
    put_blob(d, 42, 1000);                   /* already stored: not rewritten */
    kv_disk_stats s = kv_disk_get_stats(d);
    assert_int_equal(s.files, 3);
    assert_int_equal(s.bytes, 1000 + 4097);
    assert_int_equal(s.puts, 3);
    assert_int_equal(s.hits, 3);
    assert_int_equal(s.misses, 1);
    assert_int_equal(s.errors, 0);
    assert_int_equal(s.bytes_written, 1000 + 4097);
    assert_int_equal(s.bytes_read, 1000 + 4097);
    assert_int_equal(count_entries(dir, ""), 3);   /* no temporary file left behind */
    kv_disk_close(d);

    char err[64];
    assert_int_equal(kv_disk_open(&d, "", 100, err, sizeof err), KVLM_ERR_INVALID);
    assert_int_equal(kv_disk_open(&d, dir, 0, err, sizeof err), KVLM_ERR_INVALID);
    write_file(tmp, "plain", "x", 1, 0);
    snprintf(dir, sizeof dir, "%s/plain/kv", tmp);  /* a parent that is a file */
    assert_int_equal(kv_disk_open(&d, dir, 100, err, sizeof err), KVLM_ERR_IO);
    test_rm_tree(tmp); free(tmp);
}

static void test_reopen_indexes(void **state)
{
    (void)state;
    char *dir = test_make_tmpdir("kvdisk");
    assert_non_null(dir);
    kv_disk *d = open_ok(dir, 1 << 20);
    put_blob(d, 1, 100);
    put_blob(d, 2, 200);
    put_blob(d, 3, 300);
    kv_disk_close(d);
    /* bad names are left alone and not counted */
    write_file(dir, "notes.txt", "hello", 5, 0);
    write_file(dir, "0123.kvb", "hello", 5, 0);
    write_file(dir, "ABCDEF0123456789.kvb", "hello", 5, 0);
    write_file(dir, "0123456789abcdef.kvb.bak", "hello", 5, 0);

    d = open_ok(dir, 1 << 20);   /* a restart */
    kv_disk_stats s = kv_disk_get_stats(d);
    assert_int_equal(s.files, 3);
    assert_int_equal(s.bytes, 600);
    assert_int_equal(s.puts, 0);
    get_blob_ok(d, 1, 100);
    get_blob_ok(d, 2, 200);
    get_blob_ok(d, 3, 300);
    assert_true(file_exists(dir, "notes.txt"));
    assert_true(file_exists(dir, "0123.kvb"));
    assert_true(file_exists(dir, "ABCDEF0123456789.kvb"));
    assert_true(file_exists(dir, "0123456789abcdef.kvb.bak"));
    kv_disk_close(d);
    test_rm_tree(dir); free(dir);
}

static void test_lru_eviction(void **state)
{
    (void)state;
    char *dir = test_make_tmpdir("kvdisk");
    assert_non_null(dir);
    kv_disk *d = open_ok(dir, 300);
    put_blob(d, 0xA, 100);
    put_blob(d, 0xB, 100);
    put_blob(d, 0xC, 100);
    get_blob_ok(d, 0xA, 100);                 /* A is now the newest */
    put_blob(d, 0xD, 100);                    /* evicts B, the oldest */
    assert_false(final_exists(dir, 0xB));
    assert_true(final_exists(dir, 0xA) && final_exists(dir, 0xC) && final_exists(dir, 0xD));
    put_blob(d, 0xC, 100);                    /* already stored: refreshed, so ... */
    put_blob(d, 0xE, 100);                    /* ... A goes */
    assert_false(final_exists(dir, 0xA));
    assert_true(final_exists(dir, 0xC) && final_exists(dir, 0xD) && final_exists(dir, 0xE));
    put_blob(d, 0xF, 200);                    /* needs two to go: D, then C */
    assert_false(final_exists(dir, 0xD));
    assert_false(final_exists(dir, 0xC));
    assert_true(final_exists(dir, 0xE) && final_exists(dir, 0xF));
    kv_disk_stats s = kv_disk_get_stats(d);
    assert_int_equal(s.evictions, 4);
    assert_int_equal(s.files, 2);
    assert_int_equal(s.bytes, 300);
    get_blob_ok(d, 0xE, 100);
    get_blob_ok(d, 0xF, 200);
    kv_disk_close(d);
    test_rm_tree(dir); free(dir);
}

static void test_lru_order_survives_restart(void **state)
{
    (void)state;
    char *dir = test_make_tmpdir("kvdisk");
    assert_non_null(dir);
    kv_disk *d = open_ok(dir, 1000);
    put_blob(d, 1, 100);
    put_blob(d, 2, 100);
    put_blob(d, 3, 100);
    put_blob(d, 4, 100);
    get_blob_ok(d, 1, 100);   /* age order now: 2, 3, 4, 1 */
    get_blob_ok(d, 3, 100);   /* 2, 4, 1, 3 */
    kv_disk_close(d);
    d = open_ok(dir, 200);    /* a restart with a smaller budget evicts 2 and 4 */
    assert_false(final_exists(dir, 2));
    assert_false(final_exists(dir, 4));
    assert_true(final_exists(dir, 1) && final_exists(dir, 3));
    kv_disk_stats s = kv_disk_get_stats(d);
    assert_int_equal(s.files, 2);
    assert_int_equal(s.bytes, 200);
    assert_int_equal(s.evictions, 2);
    kv_disk_close(d);
    test_rm_tree(dir); free(dir);
}

static void test_budget_below_one_blob(void **state)
{
    (void)state;
    char *dir = test_make_tmpdir("kvdisk");
    assert_non_null(dir);
    kv_disk *d = open_ok(dir, 50);
    char err[256];
    uint8_t *b = test_blob(7, 100);
    assert_int_equal(kv_disk_put(d, 7, b, 100, err, sizeof err), KVLM_ERR_BUDGET);
    free(b);
    assert_non_null(strstr(err, "budget"));
    assert_int_equal(count_entries(dir, ""), 0);
    get_miss(d, 7);
    put_blob(d, 8, 50);   /* exactly the budget fits */
    get_blob_ok(d, 8, 50);
    put_blob(d, 9, 40);   /* and pushes the older one out */
    assert_false(final_exists(dir, 8));
    get_blob_ok(d, 9, 40);
    kv_disk_close(d);
    test_rm_tree(dir); free(dir);
}

static void test_garbage_returned_then_removed(void **state)
{
    (void)state;
    char *dir = test_make_tmpdir("kvdisk");
    assert_non_null(dir);
    kv_disk *d = open_ok(dir, 1 << 20);
    put_blob(d, 5, 1000);
    char name[21], path[4300];
    kv_disk_file_name(5, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(truncate(path, 10), 0);   /* torn by something else */
    void *data;
    size_t len;
    bool miss;
    char err[256];
    assert_int_equal(kv_disk_get(d, 5, &data, &len, &miss, err, sizeof err), KVLM_OK);
    assert_int_equal(len, 10);                  /* as it is: the caller verifies */
    uint8_t *want = test_blob(5, 1000);
    assert_memory_equal(data, want, 10);
    free(want);
    free(data);
    kv_disk_remove(d, 5);
    assert_false(final_exists(dir, 5));
    assert_false(kv_disk_has(d, 5));
    get_miss(d, 5);

    kv_disk_file_name(6, name);                 /* garbage under a valid name */
    write_file(dir, name, "garbage!", 8, 0);
    assert_true(kv_disk_has(d, 6));
    assert_int_equal(kv_disk_get(d, 6, &data, &len, &miss, err, sizeof err), KVLM_OK);
    assert_int_equal(len, 8);
    assert_memory_equal(data, "garbage!", 8);
    free(data);
    kv_disk_remove(d, 6);
    assert_false(final_exists(dir, 6));
    kv_disk_remove(d, 6);                       /* twice is fine */
    assert_int_equal(kv_disk_get_stats(d).files, 0);
    assert_int_equal(kv_disk_get_stats(d).bytes, 0);
    kv_disk_close(d);
    test_rm_tree(dir); free(dir);
}

static void test_stale_temp_removed(void **state)
{
    (void)state;
    char *dir = test_make_tmpdir("kvdisk");
    assert_non_null(dir);
    pid_t dead = fork();
    assert_true(dead >= 0);
    if (dead == 0) _exit(0);
    assert_int_equal(waitpid(dead, NULL, 0), dead);

    char old_own[64], young_own[64], young_dead[64];
    snprintf(old_own, sizeof old_own, ".tmp-%ld-0-00000000000000aa.kvb", (long)getpid());
    snprintf(young_own, sizeof young_own, ".tmp-%ld-1-00000000000000bb.kvb", (long)getpid());
    snprintf(young_dead, sizeof young_dead, ".tmp-%ld-0-00000000000000cc.kvb", (long)dead);
    uint8_t *b = test_blob(9, 64);
    write_file(dir, old_own, b, 64, 120);   /* two minutes old: stale */
    write_file(dir, young_own, b, 64, 0);   /* a live writer's: kept */
    write_file(dir, young_dead, b, 64, 0);  /* its writer is dead: stale */
    free(b);

    kv_disk *d = open_ok(dir, 1 << 20);
    assert_false(file_exists(dir, old_own));
    assert_false(file_exists(dir, young_dead));
    assert_true(file_exists(dir, young_own));
    assert_int_equal(kv_disk_get_stats(d).files, 0);
    get_miss(d, 9);                         /* a temporary file is never returned */
    get_miss(d, 0xaa);
    assert_false(kv_disk_has(d, 9));
    kv_disk_close(d);
    test_rm_tree(dir); free(dir);
}

static void test_injected_enospc(void **state)
{
    (void)state;
    char *dir = test_make_tmpdir("kvdisk");
    assert_non_null(dir);
    kv_disk *d = open_ok(dir, 1 << 20);
    char err[256] = "";
    uint8_t *b = test_blob(11, 5000);
    kv_disk_set_write_hook(d, 1024, NULL, NULL);
    kv_disk_set_fail_after(d, 3000);        /* in the middle of the third chunk */
    assert_int_equal(kv_disk_put(d, 11, b, 5000, err, sizeof err), KVLM_ERR_IO);
    assert_non_null(strstr(err, strerror(ENOSPC)));
    assert_false(final_exists(dir, 11));
    assert_int_equal(count_entries(dir, ""), 0);   /* the temporary file is gone */
    get_miss(d, 11);
    kv_disk_set_fail_after(d, 0);           /* the very first byte fails */
    assert_int_equal(kv_disk_put(d, 11, b, 5000, err, sizeof err), KVLM_ERR_IO);
    assert_int_equal(count_entries(dir, ""), 0);
    free(b);
    kv_disk_stats s = kv_disk_get_stats(d);
    assert_int_equal(s.errors, 2);
    assert_int_equal(s.puts, 0);
    assert_int_equal(s.files, 0);
    put_blob(d, 11, 5000);                  /* the hook is off again: later puts work */
    put_blob(d, 12, 10);
    get_blob_ok(d, 11, 5000);
    get_blob_ok(d, 12, 10);
    kv_disk_close(d);
    test_rm_tree(dir); free(dir);
}

static void test_two_handles(void **state)
{
    (void)state;
    char *dir = test_make_tmpdir("kvdisk");
    assert_non_null(dir);
    kv_disk *a = open_ok(dir, 1000), *b = open_ok(dir, 1000);
    put_blob(a, 1, 300);
    assert_true(kv_disk_has(b, 1));
    get_blob_ok(b, 1, 300);
    put_blob(b, 1, 300);                    /* stored by a: not an error */
    assert_int_equal(kv_disk_get_stats(b).puts, 0);
    kv_disk_remove(b, 1);
    get_miss(a, 1);                         /* removed by the other: a miss */
    assert_int_equal(kv_disk_get_stats(a).files, 0);
    /* budget accounting counts the other handle's files (recount on eviction) */
    put_blob(b, 2, 400);
    put_blob(b, 3, 400);
    struct timespec pause_ts = { 1, 100000000 };
    nanosleep(&pause_ts, NULL);             /* past a's recount interval */
    put_blob(a, 4, 400);                    /* a wrote only 4, but 1200 > 1000 */
    assert_false(final_exists(dir, 2));     /* the oldest, written by b, goes */
    assert_true(final_exists(dir, 3) && final_exists(dir, 4));
    assert_int_equal(kv_disk_get_stats(a).bytes, 800);
    get_miss(b, 2);
    get_blob_ok(b, 4, 400);
    kv_disk_close(a);
    kv_disk_close(b);
    test_rm_tree(dir); free(dir);
}

enum { N_KEYS = 48 };
static size_t key_len(uint64_t k) { return 1000 + (size_t)(test_mix64(k) % 60000); }

/* Puts every key (in an order set by seed) and gets random ones; a get must miss
 * or return the complete blob. Returns the number of failures. */
static int hammer(kv_disk *d, uint64_t seed)
{
    int bad = 0;
    char err[256];
    for (int i = 0; i < N_KEYS; i++) {
        uint64_t k = 0x1000 + (seed ? (uint64_t)(N_KEYS - 1 - i) : (uint64_t)i);
        uint8_t *b = test_blob(k, key_len(k));
        if (kv_disk_put(d, k, b, key_len(k), err, sizeof err) != KVLM_OK) bad++;
        free(b);
        for (int j = 0; j < 3; j++) {
            uint64_t q = 0x1000 + test_mix64(seed * 1000 + (uint64_t)(i * 3 + j)) % N_KEYS;
            void *data;
            size_t len;
            bool miss;
            kvlm_err rc = kv_disk_get(d, q, &data, &len, &miss, err, sizeof err);
            if (rc == KVLM_OK) {
                if (!blob_ok(q, data, len, key_len(q))) bad++;
                free(data);
            } else if (!miss) {
                bad++;
            }
        }
    }
    return bad;
}

static void run_two_processes(uint64_t budget)
{
    char *dir = test_make_tmpdir("kvdisk");
    assert_non_null(dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        kv_disk *c = NULL;
        if (kv_disk_open(&c, dir, budget, NULL, 0) != KVLM_OK) _exit(100);
        int bad = hammer(c, 0);
        bad += (int)kv_disk_get_stats(c).errors;
        kv_disk_close(c);
        _exit(bad > 99 ? 99 : bad);
    }
    kv_disk *d = open_ok(dir, budget), *d2 = open_ok(dir, budget);
    int bad = hammer(d, 1) + hammer(d2, 2);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(bad, 0);
    assert_int_equal(kv_disk_get_stats(d).errors + kv_disk_get_stats(d2).errors, 0);
    int present = 0;
    for (uint64_t k = 0x1000; k < 0x1000 + N_KEYS; k++) {
        if (!kv_disk_has(d, k)) continue;
        present++;
        get_blob_ok(d, k, key_len(k));
    }
    if (budget >= (uint64_t)N_KEYS * 61000) assert_int_equal(present, N_KEYS);
    else assert_true(present > 0);
    assert_int_equal(count_entries(dir, ".tmp-"), 0);
    kv_disk_close(d);
    kv_disk_close(d2);
    test_rm_tree(dir); free(dir);
}

static void test_two_processes(void **state)
{
    (void)state;
    run_two_processes(64u << 20);   /* everything fits */
    run_two_processes(400000);      /* both evict while the other writes and reads */
}

typedef struct { int fd; } hook_ctx;

static void stall_after_first_chunk(void *ctx, uint64_t key, size_t done)
{
    (void)key; (void)done;
    hook_ctx *h = ctx;
    if (write(h->fd, "x", 1) != 1) _exit(101);
    for (;;) pause();   /* "writes slowly": until the parent kills us */
}

static void test_kill9_mid_write(void **state)
{
    (void)state;
    char *dir = test_make_tmpdir("kvdisk");
    assert_non_null(dir);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    const size_t big = 8u << 20;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        alarm(30);    /* a safety net should the parent die first */
        kv_disk *c = NULL;
        if (kv_disk_open(&c, dir, 1u << 30, NULL, 0) != KVLM_OK) _exit(100);
        hook_ctx h = { pfd[1] };
        kv_disk_set_write_hook(c, 64 << 10, stall_after_first_chunk, &h);
        uint8_t *b = test_blob(77, big);
        kv_disk_put(c, 77, b, big, NULL, 0);
        _exit(102);   /* never reached */
    }
    close(pfd[1]);
    char x;
    ssize_t r = read(pfd[0], &x, 1);            /* the child is mid-write */
    close(pfd[0]);
    int n_tmp = count_entries(dir, ".tmp-");
    bool early_final = final_exists(dir, 77);
    assert_int_equal(kill(pid, SIGKILL), 0);    /* before any assert: no child outlives a failure */
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_int_equal(r, 1);
    assert_int_equal(n_tmp, 1);
    assert_false(early_final);
    assert_false(final_exists(dir, 77));

    kv_disk *d = open_ok(dir, 1u << 30);        /* the next open cleans it */
    assert_int_equal(count_entries(dir, ""), 0);
    assert_false(kv_disk_has(d, 77));
    get_miss(d, 77);
    put_blob(d, 77, big);                       /* and the key can be written again */
    get_blob_ok(d, 77, big);
    kv_disk_close(d);
    test_rm_tree(dir); free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_reopen_indexes),
        cmocka_unit_test(test_lru_eviction),
        cmocka_unit_test(test_lru_order_survives_restart),
        cmocka_unit_test(test_budget_below_one_blob),
        cmocka_unit_test(test_garbage_returned_then_removed),
        cmocka_unit_test(test_stale_temp_removed),
        cmocka_unit_test(test_injected_enospc),
        cmocka_unit_test(test_two_handles),
        cmocka_unit_test(test_two_processes),
        cmocka_unit_test(test_kill9_mid_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
