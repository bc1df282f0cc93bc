extension LogScanner {
    /// The scan of a log whose last segment ends with a close marker (docs/FORMAT.md §8.7), or
    /// nil when the log does not qualify and needs the full `scan`.
    ///
    /// A close marker is written only after a sync covering every record before it, so every
    /// sealed segment was durable and complete when the log was closed: nothing in them can be
    /// a torn write. So only the last segment is parsed (with the evidence scan past its end,
    /// exactly as `scan` does it); the sealed ones keep their checked headers, their record
    /// counts come from the chain of base LSNs, and their records are checked when first read
    /// (`DeferredSegmentIndex`). Anything unexpected in what is still checked here (a short
    /// file, a chain no writer produces, anything but zeros after the marker) falls back to the
    /// full scan, so that it is classified exactly as after a crash.
    static func scanAfterCleanClose(_ segments: [Segment]) -> Result? {
        guard segments.count >= 2, let last = segments.last else { return nil }
        var sealed: [ScannedSegment] = []
        sealed.reserveCapacity(segments.count - 1)
        for (segment, next) in zip(segments, segments.dropFirst()) {
            let base = segment.header.baseLSN
            // Only the last segment can be without data records (a roll places a record at once).
            guard segment.readableLength == segment.size, next.header.baseLSN > base,
                next.header.baseLSN - base <= LSN(maxRecords(segmentSize: segment.size))
            else { return nil }
            let count = Int(next.header.baseLSN - base)
            sealed.append(
                ScannedSegment(segment: segment, end: segment.size, durableClaim: segment.header.durableLSN,
                               deferred: DeferredSegmentIndex(segment: segment, recordCount: count)))
        }
        var result = scan([last])
        guard result.outcome == .clean, result.orphans.isEmpty, result.cut.endsWithCloseMarker else { return nil }
        result.kept = sealed + result.kept
        return result
    }

    /// The most records (empty ones) a segment of `segmentSize` bytes holds.
    static func maxRecords(segmentSize: Int) -> Int {
        (segmentSize - Format.segmentHeaderSize) / Format.recordHeaderSize
    }
}
