#ifndef LOGSTORE_CCRC32C_H
#define LOGSTORE_CCRC32C_H

#include <stddef.h>
#include <stdint.h>

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, init and final XOR 0xFFFFFFFF).
/// `crc` is the value returned for the preceding bytes (0 to start), so calls chain:
/// logstore_crc32c(logstore_crc32c(0, a, n), b, m) == CRC of a followed by b.
/// Uses the SSE4.2 `crc32` instruction when the CPU has it, else a slicing-by-8 table.
uint32_t logstore_crc32c(uint32_t crc, const void *buf, size_t len);

/// The portable table implementation, exposed so tests can check both paths.
uint32_t logstore_crc32c_portable(uint32_t crc, const void *buf, size_t len);

/// 1 when logstore_crc32c uses the hardware instruction.
int logstore_crc32c_is_hardware(void);

#endif
