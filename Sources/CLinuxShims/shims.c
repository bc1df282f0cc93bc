// sync_file_range, SEEK_DATA and SEEK_HOLE are GNU extensions Swift's Glibc module does not export;
// futex(2) has no libc wrapper at all, and Swift cannot call the variadic syscall(2).
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "CLinuxShims.h"

int logstore_start_writeback(int fd, int64_t offset, int64_t length) {
    return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
}

int64_t logstore_seek_data(int fd, int64_t offset) { return lseek(fd, offset, SEEK_DATA); }

int64_t logstore_seek_hole(int fd, int64_t offset) { return lseek(fd, offset, SEEK_HOLE); }

uint32_t logstore_eventcount_prepare(logstore_eventcount *count) {
    return __atomic_load_n(&count->epoch, __ATOMIC_SEQ_CST);
}

void logstore_eventcount_wait(logstore_eventcount *count, uint32_t epoch) {
    // The sleeper count is raised before the kernel re-reads the epoch, and the notifier bumps
    // the epoch before it reads the count (both sequentially consistent): either the notifier
    // sees this sleeper and wakes it, or the kernel sees the new epoch and does not sleep.
    __atomic_fetch_add(&count->sleepers, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &count->epoch, FUTEX_WAIT_PRIVATE, epoch, NULL, NULL, 0);
    __atomic_fetch_sub(&count->sleepers, 1, __ATOMIC_SEQ_CST);
}

void logstore_eventcount_notify_all(logstore_eventcount *count) {
    __atomic_fetch_add(&count->epoch, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&count->sleepers, __ATOMIC_SEQ_CST) > 0) {
        syscall(SYS_futex, &count->epoch, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    }
}
