import Foundation
import LogStore
import Synchronization

/// A model of what a power loss may leave of a log directory, kept beside a real log.
///
/// It follows the crash model in docs/FORMAT.md. Each file has a durable image, updated only
/// when a sync of it completes (whole-file fsync/fdatasync, or the pages of an msync or a
/// range-bounded io_uring fdatasync), and the directory has durable names, updated when the
/// directory is fsync'd. The memory image is the file as the page cache holds it now. At a
/// crash, the dirty pages are found by diffing the two (not from LogStore's bookkeeping, so a
/// stray write anywhere is caught), and each is kept, dropped or torn at 512-byte sectors; in
/// garbage mode a sector being written may instead hold random bytes. Names created, renamed
/// or unlinked since the last directory fsync may or may not survive. A page written with
/// `pwrite` is being written until a sync of it completes, even where its bytes did not change:
/// in garbage mode `anySectorOfAWrittenPage` a crash may garble it too. It also stands in for
/// the disk when recovery asks what the disk holds (`FaultInjection.readDisk`): its durable
/// images.
package final class PowerLossSimulator: @unchecked Sendable {
    /// Which sectors a torn write may fill with garbage.
    package enum Garbage: String, Sendable, CaseIterable {
        case none
        /// Only sectors whose contents the write changes ("powersafe overwrite": rewriting a
        /// sector with the bytes it already holds cannot damage it). Needs
        /// `Log.Options.commitAlignment` `.sector` or `.page`.
        case changedSectors = "changed-sectors"
        /// Any sector of a page being written, changed or not: the disk may corrupt whatever
        /// it writes. Needs `commitAlignment` `.page`.
        case anySectorOfAWrittenPage = "any-sector"
    }

    /// What a failed sync leaves of its pages, after "Can Applications Recover from fsync
    /// Failures?" (ATC '20).
    package enum SyncFailure: String, Sendable, CaseIterable {
        /// Marked clean with the new contents still cached (ext4, XFS): they are never written
        /// unless written again, and reads show bytes that are not on disk.
        case cleanWithNewContents
        /// Left dirty (the error is reported, the write retried later): they may or may not
        /// reach disk, like any dirty page.
        case stayDirty
        /// Dropped from the cache (reverted): reads show what is on disk again.
        case reverted
    }

    /// What one file of a crash state holds.
    package struct FileState: Sendable {
        package var name: String
        package var bytes: [UInt8]
    }

    package let directory: String
    private let lock = NSLock()
    // Guarded by `lock`: durable images by inode, and the directory's durable entries.
    private var durableImages: [UInt64: [UInt8]] = [:]
    private var durableNames: [String: UInt64] = [:]
    private var onCrashPoint: (@Sendable (String) -> Void)?
    /// Pages a failed sync left clean but not written, with their contents then; they stay
    /// as durable as they were until written again.
    private var stalePages: [UInt64: [Int: [UInt8]]] = [:]
    private var rewrittenPages: [UInt64: Set<Int>] = [:]
    /// Pages written with `pwrite` since a sync of them last completed.
    private var pagesBeingWritten: [UInt64: Set<Int>] = [:]
    package var syncFailure: SyncFailure = .stayDirty

    /// Starts modelling `directory`, whose current contents count as durable (a fresh log
    /// directory, or the files of a crash state written before recovery runs).
    package init(directory: String, onCrashPoint: (@Sendable (String) -> Void)? = nil) {
        self.directory = directory
        self.onCrashPoint = onCrashPoint
        for (name, inode) in Self.listing(directory) {
            durableNames[name] = inode
            durableImages[inode] = Self.read(directory + "/" + name) ?? []
        }
        FaultInjection.observe(under: directory) { [weak self] event in self?.handle(event) }
        FaultInjection.readDisk(under: directory) { [weak self] path, bytes in self?.durableBytes(path, bytes) ?? [] }
    }

    package func stop() {
        FaultInjection.stopObserving(under: directory)
        FaultInjection.readDisk(under: directory, nil)
    }

    /// What the disk holds of `bytes` of the file at `path`: its durable image, zeros past it.
    private func durableBytes(_ path: String, _ bytes: Range<Int>) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: bytes.count)
        guard let inode = Self.inode(path) else { return result }
        lock.withLock {
            let image = durableImages[inode] ?? []
            let end = min(bytes.upperBound, image.count)
            if bytes.lowerBound < end { result[0..<(end - bytes.lowerBound)] = image[bytes.lowerBound..<end] }
        }
        return result
    }

    private func handle(_ event: FaultInjection.Event) {
        switch event {
        case .fileSynced(let path):
            guard let inode = Self.inode(path), var bytes = Self.read(path) else { return }
            lock.withLock {
                keepStalePages(inode, in: &bytes)
                durableImages[inode] = bytes
                pagesBeingWritten[inode] = nil
            }
        case .pagesSynced(let path, let pages):
            guard let inode = Self.inode(path), let bytes = Self.read(path) else { return }
            lock.withLock {
                var image = durableImages[inode] ?? []
                let end = min(pages.upperBound, bytes.count)
                if image.count < end { image += [UInt8](repeating: 0, count: end - image.count) }
                if pages.lowerBound < end { image[pages.lowerBound..<end] = bytes[pages.lowerBound..<end] }
                keepStalePages(inode, in: &image)
                durableImages[inode] = image
                pagesBeingWritten[inode]?.subtract(stride(from: pages.lowerBound, to: pages.upperBound, by: Format.pageSize))
            }
        case .syncFailed(let path, let pages):
            guard let inode = Self.inode(path), let bytes = Self.read(path) else { return }
            switch syncFailure {
            case .stayDirty:
                break
            case .cleanWithNewContents:
                lock.withLock {
                    for page in stride(from: pages.lowerBound, to: min(pages.upperBound, bytes.count), by: Format.pageSize) {
                        stalePages[inode, default: [:]][page] = Array(bytes[page..<min(page + Format.pageSize, bytes.count)])
                        rewrittenPages[inode]?.remove(page)
                    }
                }
            case .reverted:
                let durable = lock.withLock { durableImages[inode] ?? [] }
                let end = min(pages.upperBound, bytes.count)
                var old = [UInt8](repeating: 0, count: max(0, end - pages.lowerBound))
                let known = max(0, min(end, durable.count) - pages.lowerBound)
                if known > 0 { old[0..<known] = durable[pages.lowerBound..<(pages.lowerBound + known)] }
                let fd = open(path, O_WRONLY | O_CLOEXEC)
                if fd >= 0 {
                    _ = old.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(pages.lowerBound)) }
                    close(fd)
                }
            }
        case .written(let path, let bytes):
            guard let inode = Self.inode(path) else { return }
            let pages = stride(from: alignDown(bytes.lowerBound, to: Format.pageSize), to: bytes.upperBound, by: Format.pageSize)
            lock.withLock {
                pagesBeingWritten[inode, default: []].formUnion(pages)
                guard stalePages[inode] != nil else { return }
                rewrittenPages[inode, default: []].formUnion(pages)
            }
        case .directorySynced(let path):
            guard path == directory else { return }
            let names = Self.listing(directory)
            lock.withLock { durableNames = names }
        case .crashPoint(let name, _):
            onCrashPoint?(name)
        }
    }

    /// A sync writes a page a failed sync left clean only if it was written again since
    /// (through `pwrite`, or changed through the mapping); otherwise the old durable bytes
    /// stay. Called under `lock` with the image about to become durable.
    private func keepStalePages(_ inode: UInt64, in image: inout [UInt8]) {
        guard let stale = stalePages[inode] else { return }
        let old = durableImages[inode] ?? []
        for (page, contents) in stale {
            let end = min(page + contents.count, image.count)
            guard page < end else { continue }
            let rewritten = rewrittenPages[inode]?.contains(page) ?? false
            if rewritten || Array(image[page..<end]) != Array(contents[0..<(end - page)]) {
                stalePages[inode]![page] = nil
                rewrittenPages[inode]?.remove(page)
            } else {
                for index in page..<end { image[index] = index < old.count ? old[index] : 0 }
            }
        }
    }

    // MARK: Crash states

    /// The files as they are now in memory and as they are durably, for building crash states.
    package struct Snapshot: Sendable {
        /// Name → (memory image, durable image or nil when no sync ever completed, pages written
        /// with `pwrite` and not synced since).
        package var current: [(name: String, memory: [UInt8], durable: [UInt8]?, nameIsDurable: Bool, beingWritten: Set<Int>)]
        /// Entries that are durable but no longer in the directory (unlinked or renamed away).
        package var vanished: [(name: String, durable: [UInt8])]
    }

    package func snapshot() -> Snapshot {
        let listing = Self.listing(directory)
        return lock.withLock {
            var snapshot = Snapshot(current: [], vanished: [])
            for (name, inode) in listing.sorted(by: { $0.key < $1.key }) {
                var memory = Self.read(directory + "/" + name) ?? []
                // A page a failed sync left clean is not dirty: a power loss leaves what is on
                // disk, whatever the cache shows.
                if let stale = stalePages[inode] {
                    let durable = durableImages[inode] ?? []
                    for (page, contents) in stale where !(rewrittenPages[inode]?.contains(page) ?? false) {
                        let end = min(page + contents.count, memory.count)
                        guard page < end, Array(memory[page..<end]) == Array(contents[0..<(end - page)]) else { continue }
                        for index in page..<end { memory[index] = index < durable.count ? durable[index] : 0 }
                    }
                }
                snapshot.current.append((name, memory, durableImages[inode], durableNames[name] == inode,
                                         pagesBeingWritten[inode] ?? []))
            }
            for (name, inode) in durableNames.sorted(by: { $0.key < $1.key }) where listing[name] != inode {
                snapshot.vanished.append((name, durableImages[inode] ?? []))
            }
            return snapshot
        }
    }

    /// One random crash state of `snapshot`.
    package static func crashState(_ snapshot: Snapshot, random: inout SplitMix64, garbage: Garbage) -> [FileState] {
        var files: [FileState] = []
        for file in snapshot.current {
            // A name not yet made durable by a directory fsync may or may not be there.
            if !file.nameIsDurable && random.next() % 2 == 0 { continue }
            files.append(FileState(name: file.name, bytes: crashImage(
                memory: file.memory, durable: file.durable ?? [], beingWritten: file.beingWritten, random: &random,
                garbage: garbage)))
        }
        for file in snapshot.vanished where random.next() % 2 == 0 && !files.contains(where: { $0.name == file.name }) {
            files.append(FileState(name: file.name, bytes: file.durable))
        }
        return files
    }

    /// The durable image with each page that differs from memory kept, dropped or torn; with
    /// garbage in any sector of a written page, a page `beingWritten` with unchanged bytes may
    /// be torn too.
    package static func crashImage(memory: [UInt8], durable: [UInt8], beingWritten: Set<Int> = [], random: inout SplitMix64,
                                   garbage: Garbage) -> [UInt8]
    {
        // A size that was never synced may revert.
        let size = memory.count == durable.count || random.next() % 2 == 0 ? memory.count : durable.count
        var image = [UInt8](repeating: 0, count: size)
        image.withUnsafeMutableBytes { out in
            durable.withUnsafeBytes { old in
                memory.withUnsafeBytes { new in
                    var page = 0
                    while page < size {
                        let end = min(page + Format.pageSize, size)
                        let oldPage = slice(old, page..<end)
                        let newPage = slice(new, page..<end)
                        if same(oldPage, newPage) {
                            if garbage == .anySectorOfAWrittenPage && beingWritten.contains(page) && random.next() % 10 >= 7 {
                                tear(old: oldPage, new: newPage, into: out, at: page, pattern: UInt8(truncatingIfNeeded: random.next()),
                                     random: &random, garbage: garbage)
                            } else {
                                copy(oldPage, into: out, at: page)
                            }
                        } else {
                            let roll = random.next() % 10
                            if roll < 4 {
                                copy(newPage, into: out, at: page)
                            } else if roll < 7 {
                                copy(oldPage, into: out, at: page)
                            } else {
                                tear(old: oldPage, new: newPage, into: out, at: page, pattern: UInt8(truncatingIfNeeded: random.next()),
                                     random: &random, garbage: garbage)
                            }
                        }
                        page = end
                    }
                }
            }
        }
        return image
    }

    /// Writes the page from `old` or `new` sector by sector (bit i of `pattern`: sector i is
    /// new); in garbage mode a sector being written may hold random bytes instead.
    package static func tear(old: UnsafeRawBufferPointer, new: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer,
                     at offset: Int, pattern: UInt8, random: inout SplitMix64, garbage: Garbage)
    {
        var sector = 0
        while sector * Format.sectorSize < new.count {
            let range = (sector * Format.sectorSize)..<min((sector + 1) * Format.sectorSize, new.count)
            let oldSector = slice(old, range)
            let newSector = slice(new, range)
            let changed = !same(oldSector, newSector)
            let mayBeGarbage = garbage == .anySectorOfAWrittenPage || (garbage == .changedSectors && changed)
            if mayBeGarbage && random.next() % 4 == 0 {
                for index in range { out[offset + index] = UInt8(truncatingIfNeeded: random.next()) }
            } else {
                copy(pattern & (1 << sector) != 0 ? newSector : oldSector, into: out, at: offset + range.lowerBound)
            }
            sector += 1
        }
    }

    /// Every crash state of `snapshot` for the exhaustive mode, when at most `maxDirtyPages`
    /// pages differ (nil otherwise): every subset of dirty pages written whole, and every
    /// sector pattern of the first and the last dirty page with the other pages written.
    package static func exhaustiveStates(_ snapshot: Snapshot, maxDirtyPages: Int = 12) -> [[FileState]]? {
        var dirty: [(file: Int, page: Int)] = []
        // The lock file and temporary files carry no records (recovery deletes the latter):
        // only segment files are enumerated.
        for (index, file) in snapshot.current.enumerated() where file.name.hasSuffix(".seg") {
            guard file.nameIsDurable, file.memory.count == (file.durable ?? []).count else { return nil }
            let durable = file.durable ?? []
            for page in stride(from: 0, to: file.memory.count, by: Format.pageSize) {
                let end = min(page + Format.pageSize, file.memory.count)
                let differs = file.memory.withUnsafeBytes { new in
                    durable.withUnsafeBytes { old in !same(slice(old, page..<end), slice(new, page..<end)) }
                }
                if differs { dirty.append((index, page)) }
            }
        }
        guard dirty.count <= maxDirtyPages else { return nil }
        func state(choosing: (Int) -> (UnsafeRawBufferPointer, UnsafeRawBufferPointer, UnsafeMutableRawBufferPointer, Int) -> Void)
            -> [FileState]
        {
            var files = snapshot.current.map { FileState(name: $0.name, bytes: $0.name.hasSuffix(".seg") ? $0.durable ?? [] : $0.memory) }
            for (k, (file, page)) in dirty.enumerated() {
                let end = min(page + Format.pageSize, files[file].bytes.count)
                snapshot.current[file].durable!.withUnsafeBytes { old in
                    snapshot.current[file].memory.withUnsafeBytes { new in
                        files[file].bytes.withUnsafeMutableBytes { out in
                            choosing(k)(slice(old, page..<end), slice(new, page..<end), out, page)
                        }
                    }
                }
            }
            files.append(contentsOf: snapshot.vanished.map { FileState(name: $0.name, bytes: $0.durable) })
            return files
        }
        var states: [[FileState]] = []
        for subset in 0..<(1 << dirty.count) {
            states.append(state { k in { _, new, out, at in if subset & (1 << k) != 0 { copy(new, into: out, at: at) } } })
        }
        for boundary in Set([0, dirty.count - 1]) where !dirty.isEmpty {
            for pattern in 0..<256 {
                states.append(state { k in
                    { old, new, out, at in
                        if k == boundary {
                            var unused = SplitMix64(seed: 0)
                            tear(old: old, new: new, into: out, at: at, pattern: UInt8(pattern), random: &unused, garbage: .none)
                        } else {
                            copy(new, into: out, at: at)
                        }
                    }
                })
            }
        }
        return states
    }

    /// Runs `recover` (a recovery of the crash state in `directory`) while recording one crash
    /// state at each of its crash points, when `enabled`; returns its result and those states,
    /// for recovering again (recovery crashed in its own steps must reach the same log).
    package static func crashStatesDuringRecovery<Result>(
        of directory: String, seed: UInt64, garbage: Garbage, enabled: Bool = true, _ recover: () -> Result
    ) -> (result: Result, states: [[FileState]]) {
        guard enabled else { return (recover(), []) }
        let states = Mutex<[[FileState]]>([])
        let holder = Mutex<PowerLossSimulator?>(nil)
        let simulator = PowerLossSimulator(directory: directory) { _ in
            guard let simulator = holder.withLock({ $0 }) else { return }
            var random = SplitMix64(seed: seed ^ UInt64(states.withLock { $0.count }) &+ 7)
            let state = crashState(simulator.snapshot(), random: &random, garbage: garbage)
            states.withLock { $0.append(state) }
        }
        holder.withLock { $0 = simulator }
        let result = recover()
        simulator.stop()
        // The handler holds `holder`, which holds the simulator: break the cycle, or every
        // call would keep its simulator's file images (megabytes) for the rest of the run.
        holder.withLock { $0 = nil }
        return (result, states.withLock { $0 })
    }

    // MARK: Files

    package static func write(_ files: [FileState], into directory: String) {
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for file in files {
            let fd = open(directory + "/" + file.name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            precondition(fd >= 0, "cannot create \(file.name) in \(directory)")
            // Sparse where the image is zero: faster, and reads the same.
            _ = ftruncate(fd, off_t(file.bytes.count))
            file.bytes.withUnsafeBytes { bytes in
                var page = 0
                while page < bytes.count {
                    let end = min(page + Format.pageSize, bytes.count)
                    let chunk = slice(bytes, page..<end)
                    if !isZero(chunk) { _ = pwrite(fd, chunk.baseAddress, chunk.count, off_t(page)) }
                    page = end
                }
            }
            close(fd)
        }
    }

    package static func read(_ path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path).map { [UInt8]($0) }
    }

    package static func inode(_ path: String) -> UInt64? {
        var info = stat()
        return stat(path, &info) == 0 ? UInt64(info.st_ino) : nil
    }

    package static func listing(_ directory: String) -> [String: UInt64] {
        var names: [String: UInt64] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            if let inode = inode(directory + "/" + name) { names[name] = inode }
        }
        return names
    }
}

private func slice(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>) -> UnsafeRawBufferPointer {
    let upper = min(range.upperBound, buffer.count)
    let lower = min(range.lowerBound, upper)
    return UnsafeRawBufferPointer(rebasing: buffer[lower..<upper])
}

/// memcmp: the simulator compares megabytes per crash state, and tests build without optimization.
package func same(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    guard a.count == b.count else { return false }
    guard a.count > 0 else { return true }
    return memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0
}

private let zeroPage = [UInt8](repeating: 0, count: Format.pageSize)

private func isZero(_ chunk: UnsafeRawBufferPointer) -> Bool {
    zeroPage.withUnsafeBytes { same(chunk, slice($0, 0..<chunk.count)) }
}

private func copy(_ source: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer, at offset: Int) {
    guard offset < out.count else { return }
    let count = min(source.count, out.count - offset)
    if count > 0, let base = source.baseAddress { (out.baseAddress! + offset).copyMemory(from: base, byteCount: count) }
}
