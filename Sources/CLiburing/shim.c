#include "CLiburing.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>

struct logstore_uring {
    struct io_uring ring;
};

int logstore_uring_create(unsigned entries, logstore_uring **out) {
    logstore_uring *r = calloc(1, sizeof *r);
    if (!r) return -ENOMEM;
    int rc = io_uring_queue_init(entries, &r->ring, 0);
    if (rc < 0) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void logstore_uring_destroy(logstore_uring *r) {
    if (!r) return;
    io_uring_queue_exit(&r->ring);
    free(r);
}

int logstore_uring_submit_fdatasync(logstore_uring *r, int fd, uint64_t user_data) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) return -EBUSY;
    io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data64(sqe, user_data);
    int rc;
    do {
        rc = io_uring_submit(&r->ring);
    } while (rc == -EINTR);
    return rc < 0 ? rc : 0;
}

int logstore_uring_queue_fdatasync_range(logstore_uring *r, int fd, uint64_t offset, uint32_t length,
                                         uint64_t user_data) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) return -EBUSY;
    io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    sqe->off = offset;
    sqe->len = length;
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int logstore_uring_submit(logstore_uring *r) {
    int rc;
    do {
        rc = io_uring_submit(&r->ring);
    } while (rc == -EINTR);
    return rc;
}

int logstore_uring_wait(logstore_uring *r, uint64_t *user_data, int32_t *result) {
    struct io_uring_cqe *cqe;
    int rc;
    do {
        rc = io_uring_wait_cqe(&r->ring, &cqe);
    } while (rc == -EINTR);
    if (rc < 0) return rc;
    *user_data = io_uring_cqe_get_data64(cqe);
    *result = cqe->res;
    io_uring_cqe_seen(&r->ring, cqe);
    return 0;
}
