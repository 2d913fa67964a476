import Dispatch

/// A value handed to worker threads that the caller guarantees is used safely (disjoint
/// ranges of one buffer, read-only data).
package struct UncheckedSendable<Value>: @unchecked Sendable {
  package let value: Value
  package init(_ value: Value) { self.value = value }
}

/// Data-parallel loops for kernels.
package enum Parallel {
  /// Calls `body(i)` for every `i` in `0..<count`, spread over the cores; returns when all
  /// are done. Iterations must touch disjoint memory.
  package static func forEach(_ count: Int, _ body: (Int) -> Void) {
    if count <= 1 {
      if count == 1 { body(0) }
      return
    }
    withoutActuallyEscaping(body) { escapable in
      let work = UncheckedSendable(escapable)
      DispatchQueue.concurrentPerform(iterations: count) { work.value($0) }
    }
  }
}
