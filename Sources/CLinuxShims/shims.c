// sync_file_range, SEEK_DATA, SEEK_HOLE and O_DIRECT are GNU extensions Swift's Glibc module does not export;
// futex(2) has no libc wrapper at all, and Swift cannot call the variadic syscall(2) or ioctl(2).
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/futex.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "CLinuxShims.h"

int logstore_start_writeback(int fd, int64_t offset, int64_t length) {
    return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
}

int64_t logstore_seek_data(int fd, int64_t offset) { return lseek(fd, offset, SEEK_DATA); }

int logstore_open_direct_read(const char *path) { return open(path, O_RDONLY | O_DIRECT | O_CLOEXEC); }

int64_t logstore_direct_io_offset_alignment(int fd) {
#ifdef STATX_DIOALIGN
    struct statx info;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &info) != 0) return -1;
    return (info.stx_mask & STATX_DIOALIGN) ? info.stx_dio_offset_align : 0;
#else
    // Kernel headers before 6.1 cannot ask; the caller then does without direct reads.
    (void)fd;
    return 0;
#endif
}

int64_t logstore_seek_hole(int fd, int64_t offset) { return lseek(fd, offset, SEEK_HOLE); }

int logstore_populate_write(void *address, size_t length) {
    return madvise(address, length, MADV_POPULATE_WRITE);
}

int logstore_populate_read(void *address, size_t length) {
    return madvise(address, length, MADV_POPULATE_READ);
}

int64_t logstore_unwritten_bytes(int fd, int64_t offset, int64_t length) {
    enum { batch = 64 };
    struct fiemap *map = calloc(1, sizeof(struct fiemap) + batch * sizeof(struct fiemap_extent));
    if (map == NULL) return -1;
    int64_t unwritten = 0;
    int64_t position = offset;
    const int64_t end = offset + length;
    while (position < end) {
        map->fm_start = (uint64_t)position;
        map->fm_length = (uint64_t)(end - position);
        map->fm_flags = FIEMAP_FLAG_SYNC;
        map->fm_extent_count = batch;
        map->fm_mapped_extents = 0;
        if (ioctl(fd, FS_IOC_FIEMAP, map) != 0) {
            int saved = errno;
            free(map);
            errno = saved;
            return -1;
        }
        if (map->fm_mapped_extents == 0) break;
        int last = 0;
        for (unsigned i = 0; i < map->fm_mapped_extents; i++) {
            const struct fiemap_extent *extent = &map->fm_extents[i];
            int64_t from = (int64_t)extent->fe_logical;
            int64_t to = from + (int64_t)extent->fe_length;
            if (from < position) from = position;
            if (to > end) to = end;
            if ((extent->fe_flags & FIEMAP_EXTENT_UNWRITTEN) && to > from) unwritten += to - from;
            position = (int64_t)(extent->fe_logical + extent->fe_length);
            if (extent->fe_flags & FIEMAP_EXTENT_LAST) last = 1;
        }
        if (last) break;
    }
    free(map);
    return unwritten;
}

static long futex(const uint32_t *word, int op, uint32_t value, const struct timespec *timeout) {
    return syscall(SYS_futex, word, op, value, timeout, NULL, 0);
}

uint32_t logstore_eventcount_prepare(logstore_eventcount *count) {
    return __atomic_load_n(&count->epoch, __ATOMIC_SEQ_CST);
}

void logstore_eventcount_wait(logstore_eventcount *count, uint32_t epoch) {
    // The sleeper count is raised before the kernel re-reads the epoch, and the notifier bumps
    // the epoch before it reads the count (both sequentially consistent): either the notifier
    // sees this sleeper and wakes it, or the kernel sees the new epoch and does not sleep.
    __atomic_fetch_add(&count->sleepers, 1, __ATOMIC_SEQ_CST);
    futex(&count->epoch, FUTEX_WAIT_PRIVATE, epoch, NULL);
    __atomic_fetch_sub(&count->sleepers, 1, __ATOMIC_SEQ_CST);
}

void logstore_eventcount_notify_all(logstore_eventcount *count) {
    __atomic_fetch_add(&count->epoch, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&count->sleepers, __ATOMIC_SEQ_CST) > 0) {
        futex(&count->epoch, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
    }
}

int32_t logstore_eventcount_sleepers(logstore_eventcount *count) {
    return __atomic_load_n(&count->sleepers, __ATOMIC_RELAXED);
}

uint32_t logstore_shared_epoch_load(const uint32_t *epoch) { return __atomic_load_n(epoch, __ATOMIC_SEQ_CST); }

int logstore_shared_epoch_wait(const uint32_t *epoch, uint32_t expected, const uint32_t *stop,
                               uint32_t stop_expected, int64_t timeout_ns) {
    struct timespec relative = {.tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000};
    long result;
    if (epoch == NULL) {
        result = futex(stop, FUTEX_WAIT_PRIVATE, stop_expected, &relative);
    } else {
        // futex_waitv(2) (Linux 5.16) sleeps on both words; its timeout is absolute.
        struct futex_waitv waiters[2] = {
            {.val = expected, .uaddr = (uintptr_t)epoch, .flags = FUTEX_32},
            {.val = stop_expected, .uaddr = (uintptr_t)stop, .flags = FUTEX_32 | FUTEX_PRIVATE_FLAG},
        };
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += relative.tv_sec;
        deadline.tv_nsec += relative.tv_nsec;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec += 1;
            deadline.tv_nsec -= 1000000000;
        }
        result = syscall(SYS_futex_waitv, waiters, 2, 0, &deadline, CLOCK_MONOTONIC);
        if (result == -1 && errno == ENOSYS) {
            // Older kernels: the stop word is noticed at the timeout at the latest.
            result = futex(epoch, FUTEX_WAIT, expected, &relative);
        }
    }
    if (result >= 0) return 0;
    return errno == EAGAIN || errno == EINTR ? 0 : errno;
}

void logstore_shared_epoch_notify_all(uint32_t *epoch) {
    // No sleeper count: sleepers map the word read-only and cannot announce themselves.
    __atomic_fetch_add(epoch, 1, __ATOMIC_SEQ_CST);
    futex(epoch, FUTEX_WAKE, INT_MAX, NULL);
}

void logstore_private_word_notify_all(uint32_t *word) {
    __atomic_fetch_add(word, 1, __ATOMIC_SEQ_CST);
    futex(word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
}

uint64_t logstore_shared_load_u64(const uint64_t *word) { return __atomic_load_n(word, __ATOMIC_SEQ_CST); }

void logstore_shared_store_u64(uint64_t *word, uint64_t value) { __atomic_store_n(word, value, __ATOMIC_SEQ_CST); }

void logstore_shared_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

void logstore_lock_acquire_contended(logstore_lock *lock) {
    // A short spin catches a holder that is running on the other CPU; beyond that the holder
    // was probably preempted, and spinning would only delay it.
    for (int spin = 0; spin < 64; spin++) {
        uint32_t expected = 0;
        if (__atomic_load_n(&lock->state, __ATOMIC_RELAXED) == 0
            && __atomic_compare_exchange_n(&lock->state, &expected, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
            return;
        }
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ volatile("yield");
#endif
    }
    while (__atomic_exchange_n(&lock->state, 2, __ATOMIC_ACQUIRE) != 0) {
        futex(&lock->state, FUTEX_WAIT_PRIVATE, 2, NULL);
    }
}

void logstore_lock_wake_one(logstore_lock *lock) {
    futex(&lock->state, FUTEX_WAKE_PRIVATE, 1, NULL);
}
