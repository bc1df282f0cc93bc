// sync_file_range, SEEK_DATA and SEEK_HOLE are GNU extensions Swift's Glibc module does not export.
#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>

#include "CLinuxShims.h"

int logstore_start_writeback(int fd, int64_t offset, int64_t length) {
    return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
}

int64_t logstore_seek_data(int fd, int64_t offset) { return lseek(fd, offset, SEEK_DATA); }

int64_t logstore_seek_hole(int fd, int64_t offset) { return lseek(fd, offset, SEEK_HOLE); }
