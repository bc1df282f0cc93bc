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
        syscall(SYS_futex, &lock->state, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
    }
}

void logstore_lock_wake_one(logstore_lock *lock) {
    syscall(SYS_futex, &lock->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}
