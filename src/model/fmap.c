/* fmap.c - see fmap.h. Room: model. May touch: core/err, libc, mmap. */
#include "model/fmap.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"

kvlm_err fmap_open(const char *path, void **base, size_t *size, char *err, size_t errlen)
{
    *base = NULL;
    *size = 0;
    kvlm_err e = KVLM_OK;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(err, errlen, KVLM_ERR_IO, "%s: open: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) e = err_set(err, errlen, KVLM_ERR_IO, "%s: stat: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode)) e = err_set(err, errlen, KVLM_ERR_IO, "%s: not a regular file", path);
    else if (st.st_size == 0)
        e = err_set(err, errlen, KVLM_ERR_FORMAT, "%s: offset 0: truncated: the file is empty", path);
    if (!e) {
        void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) e = err_set(err, errlen, KVLM_ERR_IO, "%s: mmap: %s", path, strerror(errno));
        else { *base = map; *size = (size_t)st.st_size; }
    }
    close(fd);
    return e;
}

void fmap_close(void *base, size_t size)
{
    if (base) munmap(base, size);
}
