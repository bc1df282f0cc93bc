#ifndef LOGSTORE_CLINUXSHIMS_H
#define LOGSTORE_CLINUXSHIMS_H

#include <stdint.h>

/// sync_file_range(2) with SYNC_FILE_RANGE_WRITE: starts write-back of the dirty pages in
/// [offset, offset + length) without waiting for it. Returns 0 or -1 with errno set.
int logstore_start_writeback(int fd, int64_t offset, int64_t length);

/// lseek(2) with SEEK_DATA: the first offset >= `offset` that holds data, or -1 with errno
/// ENXIO when only holes (bytes that read as zero) follow.
int64_t logstore_seek_data(int fd, int64_t offset);

/// lseek(2) with SEEK_HOLE: the first offset >= `offset` in a hole (end of file counts as one).
int64_t logstore_seek_hole(int fd, int64_t offset);

#endif
