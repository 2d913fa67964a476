import CKernelThreads
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
///
/// The pool is the calling thread's own (`CKernelThreads`): `width` − 1 workers made on
/// first use, ended with that thread, so each rank thread has its own and may pin them
/// (`pin(cpus:)`). Its workers spin briefly between loops: a step runs about fifty loops per
/// layer, and the system's pool added 17–40 µs to each (docs/benchmarks.md).
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
  /// are done. Iterations must touch disjoint memory. A call from inside another's body runs
  /// its iterations on that thread, in order.
  package static func forEach(_ count: Int, _ body: (Int) -> Void) {
    if count <= 1 || width == 1 {
      for i in 0..<count { body(i) }
      return
    }
    withoutActuallyEscaping(body) { escapable in
      if dispatchPool {
        let work = UncheckedSendable(escapable)
        DispatchQueue.concurrentPerform(iterations: count) { work.value($0) }
        return
      }
      var closure = escapable
      withUnsafeMutablePointer(to: &closure) { pointer in
        sld_pool_run(count, Int32(width), pointer) { context, index in
          context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(index)
        }
      }
    }
  }

  /// Binds the calling thread to `cpus[0]` and its kernel threads (its pool's workers, now
  /// and later) to `cpus[1...]`, one each. Returns nil, or why the platform refused (the
  /// threads it refused run where the scheduler puts them).
  public static func pin(cpus: [Int]) -> String? {
    let status = cpus.map(Int32.init).withUnsafeBufferPointer {
      sld_pool_pin($0.baseAddress, Int32($0.count))
    }
    return status == 0
      ? nil
      : "binding threads to CPUs \(cpus.map(String.init).joined(separator: ", ")) failed (error \(status))"
  }

  /// Whether loops run on the system's pool (`DispatchQueue.concurrentPerform`) instead of
  /// the calling thread's own kernel threads: `SWIFT_LORA_DIST_KERNEL_THREADS=dispatch`, for
  /// measuring one against the other in one build (docs/benchmarks.md).
  static let dispatchPool =
    ProcessInfo.processInfo.environment["SWIFT_LORA_DIST_KERNEL_THREADS"] == "dispatch"

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
