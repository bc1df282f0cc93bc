#ifndef LOGSTORE_CLINUXSHIMS_H
#define LOGSTORE_CLINUXSHIMS_H

#include <stddef.h>
#include <stdint.h>

/// sync_file_range(2) with SYNC_FILE_RANGE_WRITE: starts write-back of the dirty pages in
/// [offset, offset + length) without waiting for it. Returns 0 or -1 with errno set.
int logstore_start_writeback(int fd, int64_t offset, int64_t length);

/// lseek(2) with SEEK_DATA: the first offset >= `offset` that holds data, or -1 with errno
/// ENXIO when only holes (bytes that read as zero) follow.
int64_t logstore_seek_data(int fd, int64_t offset);

/// open(2) with O_RDONLY | O_DIRECT | O_CLOEXEC: reads that bypass the page cache and show what
/// the disk holds. Returns the descriptor or -1 with errno set (EINVAL where the filesystem has
/// no direct I/O).
int logstore_open_direct_read(const char *path);

/// statx(2) with STATX_DIOALIGN (Linux 6.1): the file offset alignment direct I/O needs, 0 where
/// the file has no real direct I/O (tmpfs; ext4 with data=journal, fscrypt or inline data, which
/// would serve an O_DIRECT read from the page cache) or the kernel cannot say, -1 with errno set.
int64_t logstore_direct_io_offset_alignment(int fd);

/// lseek(2) with SEEK_HOLE: the first offset >= `offset` in a hole (end of file counts as one).
int64_t logstore_seek_hole(int fd, int64_t offset);

/// madvise(2) with MADV_POPULATE_WRITE (Linux 5.14; defined here for older headers): faults the
/// pages of [address, address + length) in writable, as a store would, without storing.
/// Returns 0 or -1 with errno set (EINVAL on older kernels).
int logstore_populate_write(void *address, size_t length);

/// madvise(2) with MADV_POPULATE_READ (Linux 5.14): faults the pages of [address, address +
/// length) in readable, as a load would (for a file: reads them into the page cache).
int logstore_populate_read(void *address, size_t length);

/// ioctl(2) FS_IOC_FIEMAP: how many bytes of [offset, offset + length) lie in unwritten
/// extents (allocated by fallocate(2), never written), or -1 with errno set (EOPNOTSUPP where
/// the filesystem has no extent map, as on tmpfs). For tests and diagnostics.
int64_t logstore_unwritten_bytes(int fd, int64_t offset, int64_t length);

/// An event count over one futex word: waiters read the epoch, re-check their condition, then
/// sleep until the epoch moves; a notifier bumps the epoch and wakes every sleeper with a
/// single futex(2) call (FUTEX_WAKE, only when someone sleeps). Fields are accessed atomically.
typedef struct logstore_eventcount {
    uint32_t epoch;
    int32_t sleepers;
} logstore_eventcount;

/// The epoch to pass to `logstore_eventcount_wait` (acquire load).
uint32_t logstore_eventcount_prepare(logstore_eventcount *count);

/// futex(2) FUTEX_WAIT_PRIVATE: sleeps unless the epoch has moved past `epoch`; may return
/// spuriously, so callers re-check their condition.
void logstore_eventcount_wait(logstore_eventcount *count, uint32_t epoch);

/// Bumps the epoch and, if anyone sleeps, futex(2) FUTEX_WAKE_PRIVATE for all of them.
void logstore_eventcount_notify_all(logstore_eventcount *count);

/// How many threads sleep in (or are about to enter) `logstore_eventcount_wait` now: what a
/// `notify_all` would cost in wake-ups. A hint; it may change at once.
int32_t logstore_eventcount_sleepers(logstore_eventcount *count);

/// The event count's epoch alone, in a page shared between processes (the log directory's
/// `DURABLE` file, FORMAT.md §11): the writer bumps it after each completed sync, followers in
/// other processes sleep on it. Readers map the page read-only, so, unlike
/// `logstore_eventcount`, no sleeper count: every notify makes the futex(2) call (plain
/// FUTEX_WAIT/FUTEX_WAKE, not the _PRIVATE ones, which only match within one process).

/// Sequentially consistent load of the epoch; pass the value to `logstore_shared_epoch_wait`.
uint32_t logstore_shared_epoch_load(const uint32_t *epoch);

/// Sleeps for at most `timeout_ns` unless the shared `epoch` differs from `expected` or the
/// process-private `stop` word differs from `stop_expected`: futex_waitv(2) on both (on kernels
/// before 5.16, FUTEX_WAIT on `epoch` alone, so a stop waits for the timeout). `epoch` may be
/// NULL: then FUTEX_WAIT_PRIVATE on `stop`. Returns 0 when woken, when a word had moved, or on a
/// signal (callers re-check), ETIMEDOUT, or another errno (EFAULT: the page is no longer backed).
int logstore_shared_epoch_wait(const uint32_t *epoch, uint32_t expected, const uint32_t *stop,
                               uint32_t stop_expected, int64_t timeout_ns);

/// Bumps the epoch, then futex(2) FUTEX_WAKE for every sleeper in any process.
void logstore_shared_epoch_notify_all(uint32_t *epoch);

/// Bumps a process-private word, then futex(2) FUTEX_WAKE_PRIVATE for every sleeper on it.
void logstore_private_word_notify_all(uint32_t *word);

/// Sequentially consistent 64-bit load and store, for words of a shared page.
uint64_t logstore_shared_load_u64(const uint64_t *word);
void logstore_shared_store_u64(uint64_t *word, uint64_t value);
/// A full memory fence: orders a seqlock-style counter against the plain loads or stores of the
/// data it guards (`smp_wmb`/`smp_rmb` in Linux's seqcount), which one seq_cst access alone does
/// not on weakly ordered CPUs.
void logstore_shared_fence(void);

/// A futex-based lock (Drepper's "Futexes Are Tricky", mutex 2): 0 free, 1 held, 2 held with
/// sleepers. Unlike Swift's Mutex it spins only briefly before futex(2) FUTEX_WAIT, and its
/// uncontended paths are one atomic instruction inlined into the caller.
typedef struct logstore_lock {
    uint32_t state;
} logstore_lock;

/// The contended paths of `logstore_lock_acquire`/`logstore_lock_release`.
void logstore_lock_acquire_contended(logstore_lock *lock);
void logstore_lock_wake_one(logstore_lock *lock);

static inline void logstore_lock_acquire(logstore_lock *lock) {
    uint32_t expected = 0;
    if (__builtin_expect(__atomic_compare_exchange_n(&lock->state, &expected, 1, 0, __ATOMIC_ACQUIRE,
                                                     __ATOMIC_RELAXED), 1)) {
        return;
    }
    logstore_lock_acquire_contended(lock);
}

static inline void logstore_lock_release(logstore_lock *lock) {
    if (__builtin_expect(__atomic_exchange_n(&lock->state, 0, __ATOMIC_RELEASE) == 1, 1)) return;
    logstore_lock_wake_one(lock);
}

#endif
