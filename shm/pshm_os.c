/* SPDX-License-Identifier: MIT */
/*
 * pshm_os.c: the only caller of shm_open, memfd_create, mmap, mremap, munmap
 * and shm_unlink in poold (as mimalloc keeps its OS calls in prim/).
 *
 * Creating a segment sizes the file to the whole segment (ftruncate: an
 * address range, no memory yet) and commits only its first `commit` bytes
 * with posix_fallocate, the header and tables (or all of it, when asked):
 * a /dev/shm too small for those is an error here, at creation. The data
 * spans are committed as they are claimed (pshm_os_commit(), by madvise
 * MADV_POPULATE_WRITE, which returns an error where a touch would raise
 * SIGBUS) and given back by poold's purge (pshm_os_decommit(), MADV_REMOVE).
 * Never formats or validates a segment (pshm_layout.c does).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pshm.h"

static int map_fd(int fd, uint64_t bytes, void **base, char *err, size_t errlen, const char *what)
{
    void *p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        snprintf(err, errlen, "mmap %s (%llu bytes): %s", what, (unsigned long long)bytes,
                 strerror(e));
        return -e;
    }
    *base = p;
    return 0;
}

int pshm_os_create(const char *name, uint64_t bytes, uint64_t commit, unsigned mode, int gid,
                   bool exclusive, void **base, char *err, size_t errlen)
{
    int fd, rc;
    const char *what = name ? name : "anonymous segment";

    if (name) {
        int flags = O_RDWR | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : 0);
        fd = shm_open(name, flags, (mode_t)mode);
    } else {
        fd = memfd_create("poold-embedded", MFD_CLOEXEC);
    }
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s %s: %s", name ? "shm_open" : "memfd_create", what, strerror(-rc));
        return rc;
    }
    if (name) {
        /* shm_open applies the umask: set exactly what was asked. */
        if (fchmod(fd, (mode_t)mode) < 0 || (gid >= 0 && fchown(fd, (uid_t)-1, (gid_t)gid) < 0)) {
            rc = -errno;
            snprintf(err, errlen, "set owner/mode of %s: %s", what, strerror(-rc));
            goto fail;
        }
    }
    if (ftruncate(fd, (off_t)bytes) < 0) {
        rc = -errno;
        snprintf(err, errlen, "ftruncate %s to %llu bytes: %s", what, (unsigned long long)bytes,
                 strerror(-rc));
        goto fail;
    }
    if (commit > bytes)
        commit = bytes;
    rc = commit ? posix_fallocate(fd, 0, (off_t)commit) : 0;
    if (rc != 0) {
        snprintf(err, errlen,
                 "cannot reserve %llu bytes for %s: %s (is /dev/shm big enough? see `df -h "
                 "/dev/shm`)",
                 (unsigned long long)commit, what, strerror(rc));
        rc = -rc;
        goto fail;
    }
    rc = map_fd(fd, bytes, base, err, errlen, what);
    if (rc < 0)
        goto fail;
    close(fd);
    return 0;
fail:
    close(fd);
    if (name)
        shm_unlink(name);
    return rc;
}

int pshm_os_open(const char *name, void **base, uint64_t *bytes, char *err, size_t errlen)
{
    struct stat st;
    int rc;
    int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "shm_open %s: %s", name, strerror(-rc));
        return rc;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        snprintf(err, errlen, "fstat %s: %s", name, strerror(-rc));
        close(fd);
        return rc;
    }
    if (st.st_size < (off_t)PSHM_HEADER_BYTES) {
        snprintf(err, errlen, "segment %s truncated: %lld bytes", name, (long long)st.st_size);
        close(fd);
        return -EBADMSG;
    }
    *bytes = (uint64_t)st.st_size;
    rc = map_fd(fd, *bytes, base, err, errlen, name);
    close(fd);
    return rc;
}

int pshm_os_prefault(void *base, uint64_t bytes)
{
#ifdef MADV_POPULATE_WRITE
    /* The pages exist (reserved at creation); this only fills our page
     * tables, so that a reclaim never stops on a page fault per block. */
    if (madvise(base, (size_t)bytes, MADV_POPULATE_WRITE) == 0)
        return 0;
    return -errno;
#else
    (void)base;
    (void)bytes;
    return -ENOTSUP;
#endif
}

int pshm_os_commit(void *addr, uint64_t len)
{
#ifdef MADV_POPULATE_WRITE
    /* Allocates every page of the range in the file (tmpfs) and maps it
     * here. Where a write would raise SIGBUS (tmpfs full) it returns EFAULT,
     * or ENOMEM; EINTR (a signal) is retried: the pages it made stay. */
    for (;;) {
        if (madvise(addr, (size_t)len, MADV_POPULATE_WRITE) == 0)
            return 0;
        if (errno == EINTR || errno == EAGAIN)
            continue;
        if (errno == EINVAL)
            return -ENOTSUP; /* a kernel before 5.14: pages come on first touch */
        return -ENOMEM;
    }
#else
    (void)addr;
    (void)len;
    return -ENOTSUP;
#endif
}

int pshm_os_decommit(void *addr, uint64_t len)
{
    /* Punches the range out of the file: its pages go back to the system
     * and read as zero after; every process's mapping of them is dropped. */
    return madvise(addr, (size_t)len, MADV_REMOVE) == 0 ? 0 : -errno;
}

void pshm_os_unmap(void *base, uint64_t bytes)
{
    if (base)
        munmap(base, (size_t)bytes);
}

int pshm_os_snapshot(const void *base, uint64_t bytes, uint64_t copy, void **out)
{
    if (copy > bytes)
        copy = bytes;
    /* NORESERVE: the tail beyond `copy` is never written by the caller. */
    void *p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    memcpy(p, base, (size_t)copy);
    *out = p;
    return 0;
}

int pshm_os_place(void *snapshot, void *base, uint64_t bytes)
{
    /* Replaces the shared mapping in one step: no instant without one. */
    if (mremap(snapshot, (size_t)bytes, (size_t)bytes, MREMAP_MAYMOVE | MREMAP_FIXED, base) ==
        MAP_FAILED)
        return -errno;
    return 0;
}

int pshm_os_unlink(const char *name)
{
    return shm_unlink(name) < 0 ? -errno : 0;
}

uint64_t pshm_os_proc_start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: skip past the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p++;
    /* Field 3 (state) follows; starttime is field 22. */
    for (int field = 3; field < 22 && *p; field++) {
        while (*p == ' ')
            p++;
        while (*p && *p != ' ')
            p++;
    }
    return strtoull(p, NULL, 10);
}

bool pshm_os_proc_alive(pid_t pid, uint64_t start_time)
{
    if (pid <= 0)
        return false;
    if (kill(pid, 0) < 0 && errno == ESRCH)
        return false;
    if (start_time != 0) {
        uint64_t now = pshm_os_proc_start_time(pid);
        /* 0: /proc unreadable (hidepid, other namespace): trust kill(). */
        if (now != 0 && now != start_time)
            return false;
    }
    /* A zombie has exited: its caches are no longer used. */
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (f) {
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *p = strrchr(buf, ')');
        if (p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'))
            return false;
    }
    return true;
}
