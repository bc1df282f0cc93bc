#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinuxShims
import SystemPackage

/// The log directory's `DURABLE` file (FORMAT.md §12): one page the writer maps shared and
/// updates after every completed sync, so that followers in other processes learn the durable
/// LSN from one load and sleep on its epoch word (futex) instead of polling. A hint for live
/// followers only: recovery never reads it, nothing syncs it, and any failure to create or
/// read it just leaves followers polling.
///
/// The file is never shrunk or replaced once it exists (a writer reuses it in place), so a
/// follower's mapping of its first page stays backed and cannot SIGBUS.
final class WatermarkFile: @unchecked Sendable {
    // Unchecked: the mapped words are only accessed atomically, through CLinuxShims.
    let path: String
    private let descriptor: OwnedDescriptor
    private let mapping: Mapping

    private init(path: String, descriptor: consuming OwnedDescriptor, mapping: consuming Mapping) {
        self.path = path
        self.descriptor = descriptor
        self.mapping = mapping
    }

    private var epochWord: UnsafeMutablePointer<UInt32> {
        (mapping.base + Format.watermarkEpochOffset).assumingMemoryBound(to: UInt32.self)
    }

    private var durableWord: UnsafeMutablePointer<UInt64> {
        (mapping.base + Format.watermarkDurableLSNOffset).assumingMemoryBound(to: UInt64.self)
    }

    private var rewritesWord: UnsafeMutablePointer<UInt64> {
        (mapping.base + Format.watermarkRewritesOffset).assumingMemoryBound(to: UInt64.self)
    }

    /// The writer's file: opened or created, grown to one page if shorter (never truncated),
    /// stamped with `logID` and `durableLSN`. Nil if any step fails: the log works without it.
    static func openForWriter(directory: String, logID: LogID, durableLSN: LSN) -> WatermarkFile? {
        let path = directory + "/" + Format.watermarkFileName
        do throws(Errno) {
            let descriptor = try OwnedDescriptor(path: path, flags: O_RDWR | O_CREAT)
            // posix_fallocate also extends a short file; its blocks are then allocated, so that
            // a store into the page cannot SIGBUS on a full disk.
            try descriptor.allocate(offset: 0, length: Format.watermarkFileSize)
            let mapping = try Mapping(descriptor, length: Format.watermarkFileSize, writable: true)
            let file = WatermarkFile(path: path, descriptor: descriptor, mapping: mapping)
            file.stamp(logID: logID, durableLSN: durableLSN)
            return file
        } catch {
            return nil
        }
    }

    /// Writes the header fields, magic last, then the durable LSN (which may be lower than a
    /// previous writer's, after a recovery that dropped records: followers check for that). A
    /// follower opening a new file meanwhile sees either no magic (and polls) or every field.
    /// The epoch is left as it is: followers may be sleeping on it.
    private func stamp(logID: LogID, durableLSN: LSN) {
        let base = mapping.base
        base.storeBytes(of: logID.high.littleEndian, toByteOffset: Format.watermarkLogIDHighOffset, as: UInt64.self)
        base.storeBytes(of: logID.low.littleEndian, toByteOffset: Format.watermarkLogIDLowOffset, as: UInt64.self)
        base.storeBytes(of: Format.watermarkVersion.littleEndian, toByteOffset: Format.watermarkVersionOffset,
                        as: UInt32.self)
        logstore_shared_store_u64(
            (base + 0).assumingMemoryBound(to: UInt64.self), Format.watermarkMagic.littleEndian)
        // This writer's recovery may have carried out a truncation or cut a tail that followers
        // of the previous writer are positioned in.
        endRewrite(durableLSN: durableLSN)
    }

    /// A follower's view of the file: read-only descriptor and mapping, nothing written. Nil when
    /// there is no such file, when it is shorter than a page, or when it is not a version-1
    /// watermark of the log `logID`.
    static func openForFollower(directory: String, logID: LogID) -> WatermarkFile? {
        let path = directory + "/" + Format.watermarkFileName
        do throws(Errno) {
            let descriptor = try OwnedDescriptor(path: path, flags: O_RDONLY)
            guard try descriptor.size() >= Format.watermarkFileSize else { return nil }
            let mapping = try Mapping(descriptor, length: Format.watermarkFileSize, writable: false)
            let base = UnsafeRawPointer(mapping.base)
            let file = WatermarkFile(path: path, descriptor: descriptor, mapping: mapping)
            guard logstore_shared_load_u64(base.assumingMemoryBound(to: UInt64.self)) == Format.watermarkMagic.littleEndian,
                UInt32(littleEndian: base.load(fromByteOffset: Format.watermarkVersionOffset, as: UInt32.self))
                    == Format.watermarkVersion,
                UInt64(littleEndian: base.load(fromByteOffset: Format.watermarkLogIDHighOffset, as: UInt64.self))
                    == logID.high,
                UInt64(littleEndian: base.load(fromByteOffset: Format.watermarkLogIDLowOffset, as: UInt64.self))
                    == logID.low
            else { return nil }
            return file
        } catch {
            return nil
        }
    }

    /// The epoch now; read before `durableLSN` and pass to `wait`.
    var epoch: UInt32 { logstore_shared_epoch_load(epochWord) }

    var durableLSN: LSN { LSN(littleEndian: logstore_shared_load_u64(durableWord)) }

    /// Stores a new durable LSN (the writer, one sync at a time, so it only grows between
    /// rewrites; see `beginRewrite`). Followers
    /// learn of it at the next `notifyFollowers`.
    func publish(_ durableLSN: LSN) { logstore_shared_store_u64(durableWord, durableLSN.littleEndian) }

    /// A seqlock over the bytes followers read: odd while a writer is changing bytes a follower
    /// may have read or be reading (a `removeAfter` under way), and moved to a new even value
    /// when it is done and whenever a new writer opens the log (FORMAT.md §12). Followers load
    /// it before `durableLSN` and again after copying a record.
    var rewrites: UInt64 { UInt64(littleEndian: logstore_shared_load_u64(rewritesWord)) }

    /// `rewrites` again after a follower loaded `durableLSN` or copied a record: the fence keeps
    /// those loads from being satisfied after this one (a seqlock's read side).
    var rewritesAfterCopy: UInt64 {
        logstore_shared_fence()
        return rewrites
    }

    /// Before `removeAfter` writes its intent: makes `rewrites` odd (followers wait, and drop
    /// whatever they were reading), then publishes the durable LSN it will have if the cut
    /// happens, and wakes the followers.
    func beginRewrite(durableLSN: LSN) {
        let current = rewrites
        logstore_shared_store_u64(rewritesWord, (current & 1 == 1 ? current : current &+ 1).littleEndian)
        // Nothing the writer stores after this (zeros, new records) may become visible first.
        logstore_shared_fence()
        publish(durableLSN)
        notifyFollowers()
    }

    /// After the cut was carried out (or the intent could not be written): publishes the
    /// durable LSN, then makes `rewrites` even and new (followers find their position again),
    /// and wakes the followers. Also at a writer's open, whose recovery may have changed bytes
    /// past what was durable or finished a truncation a crash interrupted (left odd).
    func endRewrite(durableLSN: LSN) {
        publish(durableLSN)
        logstore_shared_fence()
        let current = rewrites
        logstore_shared_store_u64(rewritesWord, (current & 1 == 1 ? current &+ 1 : current &+ 2).littleEndian)
        notifyFollowers()
    }

    /// Bumps the epoch and wakes every follower sleeping on it, in any process.
    func notifyFollowers() { logstore_shared_epoch_notify_all(epochWord) }

    /// Sleeps until the epoch moves past `epoch`, `stop` moves past `stopEpoch`, or `timeout`
    /// passes; may return early. False when the page cannot be read any more (EFAULT).
    func wait(epoch: UInt32, stop: UnsafePointer<UInt32>, stopEpoch: UInt32, timeout: Duration) -> Bool {
        logstore_shared_epoch_wait(epochWord, epoch, stop, stopEpoch, timeout.nanoseconds) != EFAULT
    }

    /// Whether `path` still names the file this value mapped (it was not replaced or removed).
    var isStillInPlace: Bool {
        guard let mine = try? descriptor.inode(), let named = try? FileSystem.inode(path) else { return false }
        return mine == named
    }
}

extension Log {
    /// The name of the durable watermark file a writer keeps in the log directory for
    /// followers (FORMAT.md §12). Part of the log's files, though never needed to read it.
    public static let watermarkFileName = Format.watermarkFileName
}

extension Duration {
    /// The duration in whole nanoseconds, clamped to `Int64`.
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        guard seconds < Int64.max / 1_000_000_000 else { return .max }
        return max(0, seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
