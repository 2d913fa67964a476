import CKernelThreads
import Foundation
import Testing

@testable import LoRAKernels

/// The kernel threads behind `Parallel.forEach`: each calling thread's own pool of workers
/// (`sld_pool_run`), tried from fresh threads so that every test has a pool of its own.
@Suite struct KernelThreadsTests {
  /// What one loop's iterations saw: how often each index ran, and on which thread.
  final class Record: @unchecked Sendable {
    var runs: [Int]
    var threads: [UInt]
    var cpus: [Int32]
    let lock = NSLock()
    init(_ count: Int) {
      runs = Array(repeating: 0, count: count)
      threads = Array(repeating: 0, count: count)
      cpus = Array(repeating: -1, count: count)
    }

    /// Iteration `index` ran here; index 0 then waits (up to 5 s) until an iteration has run
    /// on another thread, so that a loaded machine cannot let one thread take them all.
    func note(_ index: Int) {
      lock.withLock {
        runs[index] += 1
        threads[index] = UInt(pthread_self())
        cpus[index] = sld_current_cpu()
      }
      guard index == 0 && threads.count > 1 else { return }
      let start = Date()
      while Date().timeIntervalSince(start) < 5
        && lock.withLock({ Set(threads.filter { $0 != 0 }).count < 2 })
      {
        usleep(50)
      }
    }
  }

  /// Runs `body` on a new thread and waits for it (and for the thread's end).
  static func onNewThread(_ body: @escaping @Sendable () -> Void) {
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
      body()
      done.signal()
    }
    thread.start()
    done.wait()
    while !thread.isFinished { usleep(1000) }
  }

  /// A loop of `count` iterations on `threads` threads, each recording itself (the first
  /// waiting for another thread to take part).
  static func loop(_ count: Int, threads: Int, _ record: Record) {
    withExtendedLifetime(record) {
      let context = Unmanaged.passUnretained(record).toOpaque()
      sld_pool_run(count, Int32(threads), context) { context, index in
        Unmanaged<Record>.fromOpaque(context!).takeUnretainedValue().note(index)
      }
    }
  }

  @Test(arguments: [2, 3, 5])
  func everyIndexRunsOnceAndWorkersTakePart(threads: Int) {
    for count in [1, 2, 7, 100, 1000] {
      let record = Record(count)
      Self.onNewThread { Self.loop(count, threads: threads, record) }
      #expect(record.runs == Array(repeating: 1, count: count), "\(count) on \(threads) threads")
      if count >= threads && ProcessInfo.processInfo.activeProcessorCount > 1 {
        // The first iteration waits for another thread: a worker must have taken part.
        #expect(
          Set(record.threads).count > 1, "\(count) iterations on \(Set(record.threads).count) thread(s)")
      }
    }
  }

  /// An outer loop's record and one inner loop's per outer iteration.
  final class Nested: @unchecked Sendable {
    let outer = Record(6)
    let inner = (0..<6).map { _ in Record(5) }
  }

  @Test func manyLoopsInARowAndNestedLoopsRunOnTheCallingThread() {
    let nested = Nested()
    Self.onNewThread {
      // Back to back, as a training step runs them: the same answer every time.
      for _ in 0..<2000 {
        let record = Record(3)
        Self.loopQuick(3, threads: 2, record)
        precondition(record.runs == [1, 1, 1])
      }
      withExtendedLifetime(nested) {
        sld_pool_run(6, 3, Unmanaged.passUnretained(nested).toOpaque()) { context, index in
          let nested = Unmanaged<Nested>.fromOpaque(context!).takeUnretainedValue()
          nested.outer.runs[index] += 1
          nested.outer.threads[index] = UInt(pthread_self())
          KernelThreadsTests.loopQuick(5, threads: 3, nested.inner[index])
        }
      }
    }
    #expect(nested.outer.runs == Array(repeating: 1, count: 6))
    for (i, record) in nested.inner.enumerated() {
      #expect(record.runs == Array(repeating: 1, count: 5))
      #expect(
        Set(record.threads) == [nested.outer.threads[i]], "an inner loop left its outer iteration's thread")
    }
  }

  static func loopQuick(_ count: Int, threads: Int, _ record: Record) {
    withExtendedLifetime(record) {
      sld_pool_run(count, Int32(threads), Unmanaged.passUnretained(record).toOpaque()) { context, index in
        let record = Unmanaged<Record>.fromOpaque(context!).takeUnretainedValue()
        record.runs[index] += 1
        record.threads[index] = UInt(pthread_self())
      }
    }
  }

  @Test func workersEndWithTheThreadThatMadeThem() throws {
    final class Seen: @unchecked Sendable {
      var workers = 0
      var ids: [Int] = []
    }
    let seen = Seen()
    Self.onNewThread {
      Self.loop(8, threads: 4, Record(8))
      seen.workers = Int(sld_pool_workers())
      var ids = [Int](repeating: 0, count: 8)
      let count = Int(sld_pool_worker_ids(&ids, 8))
      seen.ids = Array(ids.prefix(count))
    }
    #expect(seen.workers == 3)
    #expect(!seen.ids.isEmpty, "no worker took part")
    // The thread has ended: its workers end too (joined by its pool's destructor).
    let alive = { seen.ids.filter { FileManager.default.fileExists(atPath: "/proc/self/task/\($0)") } }
    var left = alive()
    for _ in 0..<50 where !left.isEmpty {
      usleep(100_000)
      left = alive()
    }
    #expect(left.isEmpty, "workers \(left) outlived their thread")
  }

  @Test(.enabled(if: ThreadCPUs.allowed.count >= 2, "needs 2 allowed CPUs"))
  func pinnedWorkersRunOnTheirCPUs() {
    let cpus = Array(ThreadCPUs.allowed.prefix(2)).map(Int32.init)
    let record = Record(40)
    let status = Record(1)
    Self.onNewThread {
      status.runs[0] = Int(sld_pool_pin(cpus, Int32(cpus.count)))
      Self.loop(40, threads: 2, record)
    }
    #expect(status.runs[0] == 0)
    #expect(record.runs == Array(repeating: 1, count: 40))
    // Each thread ran on its own CPU of the two, every time.
    var cpuOfThread: [UInt: Int32] = [:]
    for i in 0..<40 {
      #expect(cpus.contains(record.cpus[i]), "iteration \(i) on CPU \(record.cpus[i])")
      if let seen = cpuOfThread[record.threads[i]] { #expect(seen == record.cpus[i]) }
      cpuOfThread[record.threads[i]] = record.cpus[i]
    }
    #expect(Set(cpuOfThread.values).count == Set(cpuOfThread.keys).count)
  }
}

/// The CPUs this process may run on (from /proc/self/status).
enum ThreadCPUs {
  static let allowed: [Int] = {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
      let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") })
    else { return [] }
    return line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces).split(separator: ",").flatMap {
      part -> [Int] in
      let ends = part.split(separator: "-").compactMap { Int($0) }
      return ends.count == 2 ? Array(ends[0]...ends[1]) : ends
    }
  }()
}
