import SystemPackage

/// Every failure LogStore reports: a code to switch on, a message naming the path, segment
/// and offset involved, and the errno when a system call failed.
///
/// Every code, when it is thrown and what to do about it: <doc:Errors>.
public struct LogError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, to switch on.
    public enum Code: String, Sendable, CaseIterable {
        /// The directory (or a file in it) does not exist.
        case notFound
        /// The path exists but is not a LogStore log (no segments, bad magic, foreign files).
        case notALog
        /// A segment was written by a newer format version.
        case unsupportedVersion
        /// Data that was already durable is damaged; the writer refuses to open.
        case corruption
        /// Another writer, in this or another process, holds the directory's lock.
        case locked
        /// The payload is larger than a segment can hold.
        case recordTooLarge
        /// The filesystem is full (ENOSPC/EDQUOT) while creating or growing a segment.
        case noSpace
        /// Permission denied or a read-only filesystem.
        case permissionDenied
        /// Any other system call failure.
        case ioError
        /// The requested sync mode cannot run here (io_uring disabled or missing); LogStore never
        /// falls back to another mode silently.
        case syncModeUnavailable
        /// A sync failed earlier; the log refuses writes until it is reopened.
        case poisoned
        /// A write (append, commit) on a log opened with `Log.openReadOnly`.
        case readOnly
        /// The log was closed, by this caller or another thread, before or during the call.
        case closed
        /// The LSN is outside `firstLSN...writtenLSN`.
        case lsnOutOfRange
        /// `removeAfter` removed the record a caller was waiting to become durable.
        case truncated
        /// An option is out of range (e.g. a segment size that is not 1 MiB to 4 GiB and a
        /// multiple of 4 KiB).
        case invalidArgument
    }

    /// What went wrong.
    public var code: Code
    /// A sentence for people: what failed and, where it helps, what to do.
    public var message: String
    /// The file or directory involved.
    public var path: String?
    /// The byte offset in `path` where the problem is.
    public var offset: UInt64?
    /// The LSN involved (the record expected at `offset`, or the one asked for).
    public var lsn: LSN?
    /// The errno of the failed system call, if one failed.
    public var errno: Errno?

    /// An error with `code` and `message`, and what is known of where it happened.
    public init(
        _ code: Code, _ message: String, path: String? = nil, offset: UInt64? = nil, lsn: LSN? = nil,
        errno: Errno? = nil
    ) {
        self.code = code
        self.message = message
        self.path = path
        self.offset = offset
        self.lsn = lsn
        self.errno = errno
    }

    /// A failed system call, classified by errno.
    static func system(_ errno: Errno, _ what: String, path: String?, offset: UInt64? = nil) -> LogError {
        let code: Code
        switch errno {
        case .noSuchFileOrDirectory: code = .notFound
        case .noSpace, .diskQuotaExceeded: code = .noSpace
        case .permissionDenied, .notPermitted, .readOnlyFileSystem: code = .permissionDenied
        case .resourceTemporarilyUnavailable: code = .locked
        default: code = .ioError
        }
        return LogError(code, what, path: path, offset: offset, errno: errno)
    }

    /// `<code>: <path> at offset <offset> (LSN <lsn>): <message> (<errno>)`, leaving out what
    /// is unknown: one line, as logctl prints it.
    public var description: String {
        var text = "\(code.rawValue): "
        if let path { text += path }
        if let offset { text += (path == nil ? "" : " ") + "at offset \(offset)" }
        if let lsn { text += ((path ?? "").isEmpty && offset == nil ? "" : " ") + "(LSN \(lsn))" }
        if path != nil || offset != nil || lsn != nil { text += ": " }
        text += message
        if let errno { text += " (\(errno))" }
        return text
    }
}
