#ifndef LOGSTORE_CLIBURING_H
#define LOGSTORE_CLIBURING_H

#include <stdint.h>

// liburing.h defines _GNU_SOURCE/_XOPEN_SOURCE itself, which clashes with Swift's Glibc
// module, so it is included only by shim.c and this header exposes a small C API.

typedef struct logstore_uring logstore_uring;

/// io_uring_queue_init(3). Returns 0, or -errno (ENOSYS, EPERM when io_uring is disabled).
int logstore_uring_create(unsigned entries, logstore_uring **out);

/// io_uring_queue_exit(3) and free.
void logstore_uring_destroy(logstore_uring *ring);

/// Queues and submits IORING_OP_FSYNC with IORING_FSYNC_DATASYNC. Returns 0 or -errno.
int logstore_uring_submit_fdatasync(logstore_uring *ring, int fd, uint64_t user_data);

/// Queues (without submitting) IORING_OP_FSYNC with IORING_FSYNC_DATASYNC over
/// [offset, offset + length) only, as sync_file_range-bounded fdatasync (length 0: to the end
/// of the file). Returns 0, or -EBUSY when the submission queue is full.
int logstore_uring_queue_fdatasync_range(logstore_uring *ring, int fd, uint64_t offset, uint32_t length,
                                         uint64_t user_data);

/// io_uring_submit(3) of everything queued. Returns the number submitted or -errno.
int logstore_uring_submit(logstore_uring *ring);

/// io_uring_wait_cqe(3): waits for one completion, stores its user_data and result
/// (0 or -errno of the operation), and marks it seen. Returns 0 or -errno of the wait.
int logstore_uring_wait(logstore_uring *ring, uint64_t *user_data, int32_t *result);

#endif
