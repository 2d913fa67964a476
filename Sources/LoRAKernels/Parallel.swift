import Dispatch
import Foundation

/// A value handed to worker threads that the caller guarantees is used safely (disjoint
/// ranges of one buffer, read-only data).
package struct UncheckedSendable<Value>: @unchecked Sendable {
  package let value: Value
  package init(_ value: Value) { self.value = value }
}

/// Data-parallel loops for kernels, over `Parallel.width` threads.
///
/// The project runs its own threads instead of OpenBLAS's: OpenBLAS is kept at one thread
/// and every large product is split by rows (or columns) across `width` threads, as are the
/// element-wise ops and attention heads. One pool serves both, so no thread spins waiting for
/// work the other kind of code is doing (OpenBLAS's idle workers busy-yield).
public enum Parallel {
  /// Starts at the threads OpenBLAS would use (OPENBLAS_NUM_THREADS or all cores), and from
  /// then on keeps OpenBLAS itself at one thread.
  private static let state: UncheckedBox<Int> = {
    let initial = BLAS.defaultThreads
    BLAS.setInternalThreads(1)
    return UncheckedBox(max(1, min(initial, maxWidth)))
  }()

  /// Threads kernels use (1 to the machine's cores). Setting it also pins OpenBLAS to one
  /// thread of its own.
  public static var width: Int {
    get { state.value }
    set {
      state.value = max(1, min(newValue, maxWidth))
      BLAS.setInternalThreads(1)
    }
  }

  /// The most threads kernels use: the cores this process may run on. Scratch buffers that
  /// hold one slice per thread are sized for this many.
  public static let maxWidth = max(1, ProcessInfo.processInfo.activeProcessorCount)

  /// Calls `body(i)` for every `i` in `0..<count`, spread over the threads; returns when all
  /// are done. Iterations must touch disjoint memory.
  package static func forEach(_ count: Int, _ body: (Int) -> Void) {
    if count <= 1 || width == 1 {
      for i in 0..<count { body(i) }
      return
    }
    withoutActuallyEscaping(body) { escapable in
      let work = UncheckedSendable(escapable)
      DispatchQueue.concurrentPerform(iterations: count) { work.value($0) }
    }
  }

  /// Splits `0..<count` into at most `width` (and at most `maxParts`) contiguous ranges of at
  /// least `grain` items and calls `body(range, part)` for each in parallel.
  package static func forRanges(
    _ count: Int, grain: Int = 1, maxParts: Int = .max, _ body: (Range<Int>, Int) -> Void
  ) {
    let parts = max(1, min(width, maxParts, count / max(grain, 1)))
    if parts == 1 {
      body(0..<count, 0)
      return
    }
    let size = (count + parts - 1) / parts
    forEach(parts) { part in
      let start = part * size
      let end = min(count, start + size)
      if start < end { body(start..<end, part) }
    }
  }
}

/// A mutable value shared by all threads, written only while no kernel runs.
final class UncheckedBox<Value>: @unchecked Sendable {
  var value: Value
  init(_ value: Value) { self.value = value }
}
