import Dispatch

extension Array where Element: Sendable {
    /// `map` over chunks on every core, for the work a batch of 100,000 rules does per
    /// rule (reading a line, printing a rule). Short arrays are mapped here, where
    /// threads would cost more than they save.
    func concurrentMap<T: Sendable>(_ transform: @Sendable (Element) -> T) -> [T] {
        let chunkSize = 4096
        let chunks = (count + chunkSize - 1) / chunkSize
        guard chunks > 1 else { return map(transform) }
        var results = [[T]](repeating: [], count: chunks)
        results.withUnsafeMutableBufferPointer { buffer in
            // Each chunk writes its own element; concurrentPerform returns once all have.
            nonisolated(unsafe) let buffer = buffer
            DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                let start = chunk * chunkSize
                buffer[chunk] = self[start ..< Swift.min(start + chunkSize, count)].map(transform)
            }
        }
        return Array<T>(results.joined())
    }
}
