import CCRC32C

/// CRC-32C (Castagnoli), hardware-accelerated where the CPU allows. See docs/FORMAT.md.
public enum CRC32C {
    /// CRC of `bytes`, continuing from `crc` (the CRC of the bytes before them; 0 to start).
    @inlinable
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        logstore_crc32c(crc, bytes.baseAddress, bytes.count)
    }

    /// CRC of `bytes` (any sequence; copied first when not contiguous), continuing from `crc`.
    public static func checksum(_ bytes: some Sequence<UInt8>, continuing crc: UInt32 = 0) -> UInt32 {
        if let fast = bytes.withContiguousStorageIfAvailable({ checksum(UnsafeRawBufferPointer($0), continuing: crc) }) {
            return fast
        }
        return checksum(Array(bytes), continuing: crc)
    }

    /// The table implementation, for checking the hardware path against.
    public static func portableChecksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        logstore_crc32c_portable(crc, bytes.baseAddress, bytes.count)
    }

    /// True when the SSE4.2 instruction is in use.
    public static var isHardwareAccelerated: Bool { logstore_crc32c_is_hardware() != 0 }
}
