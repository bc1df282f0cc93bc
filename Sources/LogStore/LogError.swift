import SystemPackage

/// Every failure LogStore reports: a code to switch on, a message naming the path, segment
/// and offset involved, and the errno when a system call failed.
public struct LogError: Error, Sendable, Equatable, CustomStringConvertible {
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
        /// The log was opened read-only, or was closed.
        case readOnly
        case closed
        /// The LSN is outside `firstLSN...writtenLSN`.
        case lsnOutOfRange
        /// `removeAfter` removed the record a caller was waiting to become durable.
        case truncated
        case invalidArgument
    }

    public var code: Code
    public var message: String
    public var path: String?
    public var offset: UInt64?
    public var lsn: LSN?
    public var errno: Errno?

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
