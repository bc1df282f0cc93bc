// The on-disk format. docs/FORMAT.md is the full specification; every constant lives here.
//
// Segment file `<segment id, 20 decimal digits>.seg`, `segmentSize` bytes, little-endian:
//
//   0               8       12      16              24              32
//   +---------------+-------+-------+---------------+---------------+
//   | magic         |version|hdrSize| segmentID     | baseLSN       |
//   +---------------+-------+-------+---------------+---------------+
//   32              40                              56              64
//   +---------------+-------------------------------+---------------+
//   | segmentSize   | logID.high    | logID.low     | segmentSalt   |
//   +---------------+-------------------------------+---------------+
//   64              72      76      80                         4096
//   +---------------+-------+-------+---------- zero ----------+
//   | durableLSN    | flags | hdrCRC|                           |
//   +---------------+-------+-------+---------------------------+
//   4096: records, each at an 8-byte aligned offset, until the first all-zero header.
//
// Record (32-byte header, then payload, then zero padding to a multiple of 8):
//
//   0       4       8               16              24   26   28      32
//   +-------+-------+---------------+---------------+----+----+-------+------------
//   | crc   | length| lsn           | durableLSN    |type|flag|reservd| payload ...
//   +-------+-------+---------------+---------------+----+----+-------+------------
//
//   crc = CRC-32C(segmentSalt as 8 LE bytes ++ header bytes 4..<32 ++ payload), unmasked.
//   durableLSN = the log's durable LSN when the record was written (the recovery evidence).
//
// Truncation intent `TRUNCATE` (FORMAT.md §11), 64 bytes + a page image, present only while a truncation is
// being carried out; a writer's open completes a leftover one before recovery:
//
//   0               8       12      16                              32
//   +---------------+-------+-------+-------------------------------+
//   | magic         |version| kind  | logID.high    | logID.low     |
//   +---------------+-------+-------+-------------------------------+
//   32              40              48              56      60      64
//   +---------------+---------------+---------------+-------+-------+
//   | segmentID     | lsn           | offset        |imgLen | crc   | image (imgLen bytes) ...
//   +---------------+---------------+---------------+-------+-------+---------------------
//
//   kind 1 (front, removeBefore): segments with id < segmentID go; lsn = its baseLSN, offset 0,
//   imgLen 0. kind 2 (suffix, removeAfter): lsn = the last LSN kept; the image (≤ 8 KiB) is
//   written at alignDown(offset, 4096) of segment segmentID (records before offset, a padding
//   record to the commit-alignment boundary, zeros), every byte after it is zeroed, and
//   segments with id > segmentID go.  crc = CRC-32C(bytes 0..<60 ++ image).
//
// Durable watermark file `DURABLE` (FORMAT.md §12; a hint for live followers, never read by
// recovery, never synced), one page, little-endian, shared-mapped by the writer:
//
//   0               8       12      16              24              32              40              48     4096
//   +---------------+-------+-------+---------------+---------------+---------------+---------------+- zero -+
//   | magic         |version| epoch | durableLSN    | logID.high    | logID.low     | rewrites      |        |
//   +---------------+-------+-------+---------------+---------------+---------------+---------------+--------+
//
//   epoch: a futex word, +1 (wrapping) after each change of durableLSN; followers FUTEX_WAIT on it.
//   rewrites: a seqlock over the bytes followers read: odd while a removeAfter may be changing
//   them, a new even value when it is done and at every writer's open; a follower waits while
//   it is odd, drops what it read if it moved, and finds its position again when it changed.

/// Log sequence number: 1, 2, 3, … with no gaps. 0 means "none".
public typealias LSN = UInt64

/// Package access for the pieces the power-loss simulator (LogStoreSimulation) works in.
package enum Format {
    /// "LOGSTSEG" read as a little-endian UInt64.
    static let magic: UInt64 = 0x4745_5354_5347_4F4C
    static let version: UInt32 = 1

    static let segmentHeaderSize = 4096
    static let segmentHeaderCRCOffset = 76
    static let segmentHeaderUsedBytes = 80

    static let recordHeaderSize = 32
    static let recordAlignment = 8

    static let recordTypeData: UInt16 = 1
    /// Written by a clean close: carries `lsn` = the last data LSN, consumes no LSN, and makes
    /// every record before it provably durable to recovery.
    static let recordTypeCloseMarker: UInt16 = 2
    /// Written before a sync with a `commitAlignment`: carries `lsn` = the last data LSN,
    /// consumes no LSN, and its zero payload fills the rest of the sector or page, so that the
    /// next record starts where no sync has written yet.
    static let recordTypePadding: UInt16 = 3

    /// Bounds that keep `lsn + records` and `id + 1` from overflowing (2^63 - 1 each).
    static let maxLSN = LSN(Int64.max)
    static let maxSegmentID = UInt64(Int64.max)

    static let minSegmentSize = 1 << 20
    static let maxSegmentSize = 1 << 32
    static let defaultSegmentSize = 64 << 20
    package static let pageSize = 4096
    package static let sectorSize = 512

    static let segmentFileExtension = "seg"
    static let temporaryFileExtension = "tmp"
    static let lockFileName = "LOCK"

    /// The durable watermark file (FORMAT.md §12).
    static let watermarkFileName = "DURABLE"
    /// "LOGSTDUR" read as a little-endian UInt64.
    static let watermarkMagic: UInt64 = 0x5255_4454_5347_4F4C
    static let watermarkVersion: UInt32 = 1
    static let watermarkFileSize = 4096
    static let watermarkVersionOffset = 8
    static let watermarkEpochOffset = 12
    static let watermarkDurableLSNOffset = 16
    static let watermarkLogIDHighOffset = 24
    static let watermarkLogIDLowOffset = 32
    static let watermarkRewritesOffset = 40

    /// Side files (FORMAT.md §8.6): what recovery removed, kept for an operator. Their names
    /// never end in `.seg` or `.seg.tmp`, so no open mistakes them for segments.
    /// `dropped-<segment name>-<offset>-<UTC time>[-<n>].bin`: bytes of that segment from that
    /// offset on (offset 0: the whole segment file, moved out of the log).
    static let droppedFilePrefix = "dropped-"
    static let droppedFileExtension = "bin"
    /// `salvaged-<segment name>-<offset>-<UTC time>[-<n>].jsonl`: the valid records salvage
    /// recovery found past the cut at that segment and offset.
    static let salvageFilePrefix = "salvaged-"
    static let salvageFileExtension = "jsonl"
    /// A side file is written under its name plus this suffix, fsync'd, then renamed: a file
    /// with the final name is always complete. A writer deletes leftovers when it opens the log.
    static let partialFileSuffix = ".partial"

    /// The truncation intent (FORMAT.md §11): written as `TRUNCATE.partial`, fsync'd, renamed,
    /// directory fsync'd before a truncation changes anything; removed (and the directory
    /// fsync'd) once it is carried out. A writer's open completes a leftover one.
    static let truncationIntentFileName = "TRUNCATE"
    /// "LOGSTTRN" read as a little-endian UInt64.
    static let truncationIntentMagic: UInt64 = 0x4E52_5454_5347_4F4C
    static let truncationIntentVersion: UInt32 = 1
    static let truncationIntentHeaderSize = 64
    static let truncationIntentCRCOffset = 60
    /// The largest page image a suffix intent carries: the page holding the cut, and the next
    /// one when the padding record after the cut runs into it.
    static let maxTruncationImage = 2 * pageSize
    /// `removeBefore`: segments with an id below the intent's segment id are removed.
    static let truncationKindFront: UInt32 = 1
    /// `removeAfter`: the intent's segment is zeroed from the intent's offset on, and every
    /// segment with a higher id is removed.
    static let truncationKindSuffix: UInt32 = 2

    /// Bytes a record occupies in the segment, header and padding included.
    package static func recordFootprint(payloadLength: Int) -> Int {
        alignUp(recordHeaderSize + payloadLength, to: recordAlignment)
    }

    /// The largest payload a segment of `segmentSize` bytes can hold.
    static func maxPayload(segmentSize: Int) -> Int {
        min(segmentSize - segmentHeaderSize - recordHeaderSize, Int(UInt32.max))
    }

    static func segmentFileName(id: UInt64) -> String {
        let digits = String(id)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + "." + segmentFileExtension
    }

    /// The segment id encoded in a file name, or nil if the name is not a segment's.
    static func segmentID(fromFileName name: String) -> UInt64? {
        guard name.hasSuffix("." + segmentFileExtension) else { return nil }
        let stem = name.dropLast(segmentFileExtension.count + 1)
        guard stem.count == 20, stem.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return UInt64(stem)
    }
}

@inline(__always)
func alignUp(_ value: Int, to alignment: Int) -> Int { (value + alignment - 1) & ~(alignment - 1) }

@inline(__always)
package func alignDown(_ value: Int, to alignment: Int) -> Int { value & ~(alignment - 1) }
