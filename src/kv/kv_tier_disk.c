/* kv_tier_disk.c - the disk tier's blob store (the design is in kv_tier_disk.h).
 * Room: kv. May touch: core (errors), libc and POSIX (openat/renameat2/fsync/
 * utimensat on one directory fd). Knows nothing of the pool or the model.
 *
 * The index is an open-addressing hash table (linear probing, backward-shift
 * deletion) of the final files this handle knows:
 *
 *   slot[i] = { key, size, age_ns, used }      n_slot a power of two, load <= 1/2
 *
 * It is a cache of the directory, not its truth: another process may add or
 * remove files at any time. So get/has ask the file system and fix the index,
 * and eviction rescans the directory first (at most once a second: a rescan
 * stats every file) and re-checks a victim's mtime before unlinking it, so a file
 * another process just used is not evicted on a stale age.
 *
 * Invariants: n_used == number of used slots; total == sum of their sizes. */
#include "kv/kv_tier_disk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"

enum { TMP_STALE_SEC = 60, RESCAN_NS = 1000000000 };
#define DEFAULT_CHUNK ((size_t)1 << 20)
#define TMP_PREFIX ".tmp-"

typedef struct slot {
    uint64_t key;
    uint64_t size;
    int64_t  age_ns;
    uint8_t  used;
} slot;

struct kv_disk {
    int      dirfd;
    uint64_t budget;
    slot    *slots;          /* [n_slot] */
    size_t   n_slot;         /* power of two */
    size_t   n_used;
    uint64_t total;          /* bytes of the indexed files */
    int64_t  last_age;       /* the newest age this handle handed out */
    int64_t  last_rescan;    /* CLOCK_MONOTONIC ns of the last directory rescan */
    uint64_t tmp_counter;
    kv_disk_stats st;
    /* test hooks */
    int64_t  fail_after;     /* < 0: off */
    size_t   chunk;
    void   (*after_chunk)(void *ctx, uint64_t key, size_t bytes_done);
    void    *hook_ctx;
};

/* ---- time --------------------------------------------------------------------------- */

static int64_t clock_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A fresh LRU age: the wall clock (shared with other processes and restarts),
 * strictly increasing within the handle (file systems stamp mtimes with a coarse
 * clock, so two puts in one tick would otherwise tie). */
static int64_t next_age(kv_disk *d)
{
    int64_t now = clock_ns(CLOCK_REALTIME);
    d->last_age = now > d->last_age ? now : d->last_age + 1;
    return d->last_age;
}

static struct timespec ns_to_ts(int64_t ns)
{
    struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000), .tv_nsec = (long)(ns % 1000000000) };
    return ts;
}

static int64_t mtime_ns(const struct stat *sb)
{
    return (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec;
}

/* ---- names -------------------------------------------------------------------------- */

void kv_disk_file_name(uint64_t key, char name[static 21])
{
    snprintf(name, 21, "%016llx.kvb", (unsigned long long)key);
}

/* A final name is exactly 16 lowercase hex digits then ".kvb". */
static bool parse_final_name(const char *name, uint64_t *key)
{
    uint64_t k = 0;
    for (int i = 0; i < 16; i++) {
        char c = name[i];
        int v;
        if (c >= '0' && c <= '9') v = c - '0';
        else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
        else return false;
        k = k << 4 | (uint64_t)v;
    }
    if (strcmp(name + 16, ".kvb") != 0) return false;
    *key = k;
    return true;
}

/* A temporary name is TMP_PREFIX "<pid>-..."; *pid is its writer. */
static bool parse_tmp_name(const char *name, long *pid)
{
    size_t np = strlen(TMP_PREFIX);
    if (strncmp(name, TMP_PREFIX, np) != 0) return false;
    char *end;
    errno = 0;
    long p = strtol(name + np, &end, 10);
    if (errno || end == name + np || *end != '-' || p <= 0) return false;
    *pid = p;
    return true;
}

/* ---- the index ---------------------------------------------------------------------- */

static uint64_t mix64(uint64_t x)   /* splitmix64's finalizer */
{
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27; x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static slot *idx_find(kv_disk *d, uint64_t key)
{
    size_t mask = d->n_slot - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (!d->slots[i].used) return NULL;
        if (d->slots[i].key == key) return &d->slots[i];
    }
}

static bool idx_grow(kv_disk *d)
{
    size_t n = d->n_slot * 2;
    slot *s = calloc(n, sizeof *s);
    if (!s) return false;
    for (size_t i = 0; i < d->n_slot; i++) {
        if (!d->slots[i].used) continue;
        size_t j = mix64(d->slots[i].key) & (n - 1);
        while (s[j].used) j = (j + 1) & (n - 1);
        s[j] = d->slots[i];
    }
    free(d->slots);
    d->slots = s;
    d->n_slot = n;
    return true;
}

/* Adds or updates key; false only when out of memory (the index then misses a
 * file, which costs budget accuracy until the next rescan, never correctness). */
static bool idx_set(kv_disk *d, uint64_t key, uint64_t size, int64_t age)
{
    slot *s = idx_find(d, key);
    if (s) {
        d->total = d->total - s->size + size;
        s->size = size;
        s->age_ns = age;
        return true;
    }
    if ((d->n_used + 1) * 2 > d->n_slot && !idx_grow(d)) return false;
    size_t mask = d->n_slot - 1, i = mix64(key) & mask;
    while (d->slots[i].used) i = (i + 1) & mask;
    d->slots[i] = (slot){ .key = key, .size = size, .age_ns = age, .used = 1 };
    d->n_used++;
    d->total += size;
    return true;
}

/* Backward-shift deletion: later members of the probe run move up into the hole. */
static void idx_del(kv_disk *d, uint64_t key)
{
    slot *s = idx_find(d, key);
    if (!s) return;
    size_t mask = d->n_slot - 1, hole = (size_t)(s - d->slots);
    d->total -= s->size;
    d->n_used--;
    d->slots[hole].used = 0;
    for (size_t i = (hole + 1) & mask; d->slots[i].used; i = (i + 1) & mask) {
        size_t home = mix64(d->slots[i].key) & mask;
        /* slot i may move to the hole iff its home is not in (hole, i] cyclically */
        bool stays = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
        if (stays) continue;
        d->slots[hole] = d->slots[i];
        d->slots[i].used = 0;
        hole = i;
    }
}

static void idx_clear(kv_disk *d)
{
    memset(d->slots, 0, d->n_slot * sizeof *d->slots);
    d->n_used = 0;
    d->total = 0;
}

/* ---- scanning ----------------------------------------------------------------------- */

/* A temporary file is stale when its writer is dead, or it is older than a minute
 * (a writer on another machine sharing the directory, or a reused pid). Our own
 * pid counts as alive: another handle of this process may be writing it. */
static bool tmp_is_stale(long pid, const struct stat *sb)
{
    if (time(NULL) - sb->st_mtim.tv_sec > TMP_STALE_SEC) return true;
    if ((pid_t)pid == getpid()) return false;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* Rebuilds the index from the directory; with clean_tmp, removes stale temporary
 * files. Files that vanish while scanning are skipped. */
static kvlm_err rescan(kv_disk *d, bool clean_tmp, char *err, size_t errlen)
{
    int fd = openat(d->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return err_set(err, errlen, KVLM_ERR_IO, "kv disk: cannot read the directory: %s", strerror(errno));
    DIR *dir = fdopendir(fd);
    if (!dir) {
        close(fd);
        return err_set(err, errlen, KVLM_ERR_IO, "kv disk: cannot read the directory: %s", strerror(errno));
    }
    idx_clear(d);
    kvlm_err rc = KVLM_OK;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        uint64_t key;
        long pid;
        struct stat sb;
        bool final = parse_final_name(de->d_name, &key);
        bool tmp = !final && clean_tmp && parse_tmp_name(de->d_name, &pid);
        if (!final && !tmp) continue;
        if (fstatat(d->dirfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (tmp) {
            if (tmp_is_stale(pid, &sb)) unlinkat(d->dirfd, de->d_name, 0);
            continue;
        }
        if (!idx_set(d, key, (uint64_t)sb.st_size, mtime_ns(&sb))) {
            rc = err_set(err, errlen, KVLM_ERR_NOMEM, "kv disk: out of memory for the index");
            break;
        }
    }
    closedir(dir);
    d->last_rescan = clock_ns(CLOCK_MONOTONIC);
    return rc;
}

/* ---- eviction ----------------------------------------------------------------------- */

static int cmp_age(const void *a, const void *b)
{
    const slot *x = a, *y = b;
    return (x->age_ns > y->age_ns) - (x->age_ns < y->age_ns);
}

/* Evicts the oldest files until the total fits the budget. keep (if not NULL) is
 * never evicted: the file just written. Recounts the directory first when the
 * last count is over a second old, so the total includes what other processes
 * added or removed (a recount stats every file: at most once a second). */
static void evict_to_budget(kv_disk *d, const uint64_t *keep)
{
    if (clock_ns(CLOCK_MONOTONIC) - d->last_rescan >= RESCAN_NS && rescan(d, false, NULL, 0) != KVLM_OK) return;
    if (d->total <= d->budget) return;
    size_t n = 0;
    slot *order = malloc((d->n_used ? d->n_used : 1) * sizeof *order);
    if (!order) return;
    for (size_t i = 0; i < d->n_slot; i++)
        if (d->slots[i].used) order[n++] = d->slots[i];
    qsort(order, n, sizeof *order, cmp_age);
    for (size_t i = 0; i < n && d->total > d->budget; i++) {
        if (keep && order[i].key == *keep) continue;
        char name[21];
        kv_disk_file_name(order[i].key, name);
        struct stat sb;
        if (fstatat(d->dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {   /* gone already */
            idx_del(d, order[i].key);
            continue;
        }
        if (mtime_ns(&sb) > order[i].age_ns) {   /* used by another process since: keep */
            idx_set(d, order[i].key, (uint64_t)sb.st_size, mtime_ns(&sb));
            continue;
        }
        if (unlinkat(d->dirfd, name, 0) == 0) d->st.evictions++;
        idx_del(d, order[i].key);
    }
    free(order);
}

/* ---- open / close ------------------------------------------------------------------- */

/* mkdir -p with mode 0700 for the directories it creates. */
static kvlm_err mkdir_p(const char *dir, char *err, size_t errlen)
{
    size_t n = strlen(dir);
    char *p = malloc(n + 1);
    if (!p) return err_set(err, errlen, KVLM_ERR_NOMEM, "kv disk: out of memory");
    memcpy(p, dir, n + 1);
    kvlm_err rc = KVLM_OK;
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            rc = err_set(err, errlen, KVLM_ERR_IO, "kv disk: cannot create %s: %s", p, strerror(errno));
            break;
        }
        p[i] = c;
    }
    free(p);
    return rc;
}

kvlm_err kv_disk_open(kv_disk **out, const char *dir, uint64_t budget_bytes, char *err, size_t errlen)
{
    if (!out || !dir || !*dir) return err_set(err, errlen, KVLM_ERR_INVALID, "kv disk: no directory given");
    if (budget_bytes == 0) return err_set(err, errlen, KVLM_ERR_INVALID, "kv disk: the budget must be positive");
    kvlm_err rc = mkdir_p(dir, err, errlen);
    if (rc != KVLM_OK) return rc;
    kv_disk *d = calloc(1, sizeof *d);
    if (!d) return err_set(err, errlen, KVLM_ERR_NOMEM, "kv disk: out of memory");
    d->dirfd = -1;
    d->budget = budget_bytes;
    d->fail_after = -1;
    d->n_slot = 64;
    d->slots = calloc(d->n_slot, sizeof *d->slots);
    if (!d->slots) {
        rc = err_set(err, errlen, KVLM_ERR_NOMEM, "kv disk: out of memory");
        goto fail;
    }
    d->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->dirfd < 0) {
        rc = err_set(err, errlen, KVLM_ERR_IO, "kv disk: cannot open %s: %s", dir, strerror(errno));
        goto fail;
    }
    rc = rescan(d, true, err, errlen);
    if (rc != KVLM_OK) goto fail;
    d->last_rescan = clock_ns(CLOCK_MONOTONIC);
    evict_to_budget(d, NULL);
    *out = d;
    return KVLM_OK;
fail:
    kv_disk_close(d);
    return rc;
}

void kv_disk_close(kv_disk *d)
{
    if (!d) return;
    if (d->dirfd >= 0) close(d->dirfd);
    free(d->slots);
    free(d);
}

/* ---- put ---------------------------------------------------------------------------- */

/* Writes all of data[0..len) to fd in chunks; 0 or an errno. The test hooks act here. */
static int write_all(kv_disk *d, int fd, uint64_t key, const uint8_t *data, size_t len)
{
    size_t chunk = d->chunk ? d->chunk : DEFAULT_CHUNK, done = 0;
    while (done < len) {
        size_t n = len - done < chunk ? len - done : chunk;
        if (d->fail_after >= 0 && (uint64_t)d->fail_after < n) {   /* the injected full disk */
            size_t part = (size_t)d->fail_after;
            d->fail_after = -1;
            if (part > 0 && write(fd, data + done, part) > 0) d->st.bytes_written += (int64_t)part;
            return ENOSPC;
        }
        ssize_t w = write(fd, data + done, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (w == 0) return EIO;
        if (d->fail_after >= 0) d->fail_after -= w;
        done += (size_t)w;
        d->st.bytes_written += w;
        if (d->after_chunk) d->after_chunk(d->hook_ctx, key, done);
    }
    return 0;
}

/* Renames tmp to name unless name exists; 0, EEXIST or an errno. */
static int rename_noreplace(int dirfd, const char *tmp, const char *name)
{
    if (renameat2(dirfd, tmp, dirfd, name, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return errno;
    /* a file system without RENAME_NOREPLACE: link fails on an existing name */
    if (linkat(dirfd, tmp, dirfd, name, 0) == 0) {
        unlinkat(dirfd, tmp, 0);
        return 0;
    }
    return errno;
}

kvlm_err kv_disk_put(kv_disk *d, uint64_t key, const void *data, size_t len, char *err, size_t errlen)
{
    char name[21], tmp[96];
    kv_disk_file_name(key, name);
    if ((uint64_t)len > d->budget)
        return err_set(err, errlen, KVLM_ERR_BUDGET, "kv disk: a blob of %zu bytes exceeds the budget of %llu",
                       len, (unsigned long long)d->budget);
    struct timespec times[2];
    times[0] = times[1] = ns_to_ts(next_age(d));
    struct stat sb;
    if (fstatat(d->dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0) {   /* already stored */
        utimensat(d->dirfd, name, times, 0);
        idx_set(d, key, (uint64_t)sb.st_size, d->last_age);
        return KVLM_OK;
    }
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd) rnd = mix64((uint64_t)clock_ns(CLOCK_MONOTONIC));
    int fd = -1;
    for (int attempt = 0; attempt < 8 && fd < 0; attempt++) {
        snprintf(tmp, sizeof tmp, TMP_PREFIX "%ld-%llu-%016llx.kvb", (long)getpid(),
                 (unsigned long long)d->tmp_counter++, (unsigned long long)mix64(rnd + (uint64_t)attempt));
        fd = openat(d->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        d->st.errors++;
        return err_set(err, errlen, KVLM_ERR_IO, "kv disk: cannot create a temporary file: %s", strerror(errno));
    }
    int e = write_all(d, fd, key, data, len);
    const char *what = "write";
    if (!e && fsync(fd) != 0) { e = errno; what = "fsync"; }
    if (!e && futimens(fd, times) != 0) { e = errno; what = "set the time of"; }
    if (close(fd) != 0 && !e) { e = errno; what = "close"; }
    if (!e) {
        e = rename_noreplace(d->dirfd, tmp, name);
        what = "rename";
        if (e == EEXIST) {   /* another writer won the race: its file is complete */
            unlinkat(d->dirfd, tmp, 0);
            idx_set(d, key, (uint64_t)len, d->last_age);
            return KVLM_OK;
        }
    }
    if (e) {
        unlinkat(d->dirfd, tmp, 0);
        d->st.errors++;
        return err_set(err, errlen, KVLM_ERR_IO, "kv disk: cannot %s %s (%zu bytes): %s", what, name, len, strerror(e));
    }
    /* the rename is durable only once the directory is: a failure here leaves a
     * complete file that may not survive a crash, so it is reported but kept */
    if (fsync(d->dirfd) != 0) {
        d->st.errors++;
        idx_set(d, key, (uint64_t)len, d->last_age);
        return err_set(err, errlen, KVLM_ERR_IO, "kv disk: cannot fsync the directory: %s", strerror(errno));
    }
    d->st.puts++;
    idx_set(d, key, (uint64_t)len, d->last_age);
    evict_to_budget(d, &key);
    return KVLM_OK;
}

/* ---- get / has / remove ------------------------------------------------------------- */

static kvlm_err miss(kv_disk *d, uint64_t key, bool *missed, char *err, size_t errlen)
{
    idx_del(d, key);
    d->st.misses++;
    if (missed) *missed = true;
    return err_set(err, errlen, KVLM_ERR_IO, "miss");
}

kvlm_err kv_disk_get(kv_disk *d, uint64_t key, void **data, size_t *len, bool *missed,
                     char *err, size_t errlen)
{
    *data = NULL;
    *len = 0;
    if (missed) *missed = false;
    char name[21];
    kv_disk_file_name(key, name);
    int fd = openat(d->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT) return miss(d, key, missed, err, errlen);
        d->st.errors++;
        return err_set(err, errlen, KVLM_ERR_IO, "kv disk: cannot open %s: %s", name, strerror(errno));
    }
    /* An open file stays readable if another process evicts it meanwhile; it is
     * immutable (written under another name, then renamed), so st_size is its size. */
    struct stat sb;
    kvlm_err rc = KVLM_OK;
    uint8_t *buf = NULL;
    size_t got = 0;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = err_set(err, errlen, KVLM_ERR_IO, "kv disk: cannot stat %s", name);
        goto fail;
    }
    size_t size = (size_t)sb.st_size;
    buf = malloc(size ? size : 1);
    if (!buf) {
        rc = err_set(err, errlen, KVLM_ERR_NOMEM, "kv disk: out of memory for %zu bytes of %s", size, name);
        goto fail;
    }
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = err_set(err, errlen, KVLM_ERR_IO, "kv disk: cannot read %s: %s", name, strerror(errno));
            goto fail;
        }
        if (r == 0) break;   /* shorter than stat said: returned as is, the caller verifies */
        got += (size_t)r;
    }
    struct timespec times[2];
    times[0] = times[1] = ns_to_ts(next_age(d));
    futimens(fd, times);
    close(fd);
    idx_set(d, key, (uint64_t)size, d->last_age);
    d->st.hits++;
    d->st.bytes_read += (int64_t)got;
    *data = buf;
    *len = got;
    return KVLM_OK;
fail:
    d->st.errors++;
    free(buf);
    close(fd);
    return rc;
}

bool kv_disk_has(kv_disk *d, uint64_t key)
{
    char name[21];
    kv_disk_file_name(key, name);
    struct stat sb;
    if (fstatat(d->dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode)) {
        idx_del(d, key);
        return false;
    }
    slot *s = idx_find(d, key);
    if (!s || s->size != (uint64_t)sb.st_size) idx_set(d, key, (uint64_t)sb.st_size, mtime_ns(&sb));
    return true;
}

void kv_disk_remove(kv_disk *d, uint64_t key)
{
    char name[21];
    kv_disk_file_name(key, name);
    unlinkat(d->dirfd, name, 0);
    idx_del(d, key);
}

kv_disk_stats kv_disk_get_stats(const kv_disk *d)
{
    kv_disk_stats s = d->st;
    s.files = (int64_t)d->n_used;
    s.bytes = (int64_t)d->total;
    return s;
}

/* ---- test hooks --------------------------------------------------------------------- */

void kv_disk_set_fail_after(kv_disk *d, int64_t n_bytes) { d->fail_after = n_bytes < 0 ? -1 : n_bytes; }

void kv_disk_set_write_hook(kv_disk *d, size_t chunk_bytes,
                            void (*after_chunk)(void *ctx, uint64_t key, size_t bytes_done), void *ctx)
{
    d->chunk = chunk_bytes;
    d->after_chunk = after_chunk;
    d->hook_ctx = ctx;
}

/* ---- the disk tier (kv_tier_ops) ---------------------------------------------------- */

static kvlm_err tier_get(kv_tier *t, uint64_t key, void **data, size_t *len, char *err, size_t errlen)
{
    bool missed = false;
    char msg[256] = "";
    kvlm_err rc = kv_disk_get(t->impl, key, data, len, &missed, msg, sizeof msg);   /* before missed is read */
    return kv_tier_get_result(rc, missed, msg, err, errlen);
}

static kvlm_err tier_put(kv_tier *t, uint64_t key, const void *data, size_t len, char *err, size_t errlen)
{
    return kv_disk_put(t->impl, key, data, len, err, errlen);
}

static void tier_drop(kv_tier *t, uint64_t key) { kv_disk_remove(t->impl, key); }

static void tier_stats(const kv_tier *t, kv_tier_stats *out)
{
    kv_disk_stats s = kv_disk_get_stats(t->impl);
    *out = (kv_tier_stats){ .hits = s.hits, .misses = s.misses, .puts = s.puts, .evictions = s.evictions,
                            .errors = s.errors, .bytes_read = s.bytes_read, .bytes_written = s.bytes_written,
                            .n_items = s.files, .bytes_stored = s.bytes };
}

static void tier_close(kv_tier *t)
{
    kv_disk_close(t->impl);
    free(t);
}

static const kv_tier_ops disk_ops = { "disk", tier_get, tier_put, tier_drop, tier_stats, tier_close };

kvlm_err kv_tier_disk_new(kv_tier **out, const char *dir, uint64_t budget_bytes, char *err, size_t errlen)
{
    kv_tier *t = malloc(sizeof *t);
    if (!t) return err_set(err, errlen, KVLM_ERR_NOMEM, "kv disk: out of memory");
    kv_disk *d;
    kvlm_err rc = kv_disk_open(&d, dir, budget_bytes, err, errlen);
    if (rc != KVLM_OK) { free(t); return rc; }
    *t = (kv_tier){ &disk_ops, d };
    *out = t;
    return KVLM_OK;
}
