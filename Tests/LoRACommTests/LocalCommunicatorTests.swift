import LoRAKernels
import Testing

@testable import LoRAComm

struct Failure: Error, Equatable {}

@Suite struct LocalCommunicatorTests {
  @Test(arguments: [1, 2, 3, 4])
  func passesEveryCollectiveCheck(ranks: Int) throws {
    let results = try LocalCommunicator.run(ranks: ranks) { comm in CollectiveChecks.run(on: comm) }
    #expect(results.count == ranks)
    for (rank, checks) in results.enumerated() {
      #expect(checks.count >= 12)
      for check in checks { #expect(check.passed, "rank \(rank): \(check.name): \(check.detail)") }
    }
  }

  @Test func singleRankNeedsNoThreads() throws {
    let comm = LocalCommunicator.single()
    #expect(comm.rank == 0 && comm.size == 1)
    let t = Tensor(shape: [2], values: [1, 2])
    try comm.allreduce(t, .average)
    #expect(t.values == [1, 2])
    let checks = CollectiveChecks.run(on: comm)
    #expect(checks.allSatisfy { $0.passed })
  }

  @Test func averageIsSumOverRankCount() throws {
    let values = try LocalCommunicator.run(ranks: 4) { comm in
      let t = Tensor(shape: [3], values: [Float(comm.rank), 1, -Float(comm.rank)])
      try comm.allreduce(t, .average)
      return t.values
    }
    for v in values { #expect(v == [1.5, 1, -1.5]) }
  }

  @Test func aRankThatThrowsReleasesTheOthers() {
    #expect(throws: Failure.self) {
      _ = try LocalCommunicator.run(ranks: 3) { comm in
        if comm.rank == 1 { throw Failure() }
        try comm.barrier()  // would wait forever without the abort
        try comm.barrier()
      }
    }
  }

  @Test func othersSeeTheAbortAsTypedError() throws {
    let outcomes = try LocalCommunicator.run(ranks: 3) { comm -> String in
      if comm.rank == 2 {
        do { _ = try comm.split(colour: -1, key: 0) } catch { return "\(error)" }
        return "no error"
      }
      do { _ = try comm.split(colour: 0, key: 0) } catch { return "\(error)" }
      return "no error"
    }
    // A negative colour on one rank is seen by every rank after the exchange.
    for outcome in outcomes { #expect(outcome.contains("colour must be non-negative, rank 2")) }
  }

  @Test func mismatchedCountsThrowOnEveryRank() throws {
    let messages = try LocalCommunicator.run(ranks: 2) { comm -> String in
      do {
        try comm.allreduce(Tensor(zeros: [comm.rank + 1]), .sum)
        return "no error"
      } catch { return "\(error)" }
    }
    for message in messages { #expect(message.contains("counts differ between ranks: [1, 2]")) }
  }

  @Test func splitGroupsWorkIndependently() throws {
    let sums = try LocalCommunicator.run(ranks: 4) { comm -> [Double] in
      let half = try comm.split(colour: comm.rank / 2, key: 0)
      var value = [Double(comm.rank)]
      for _ in 0..<50 { try half.barrier() }  // groups make progress at their own pace
      try half.allreduce(&value, .sum)
      return value
    }
    #expect(sums == [[1], [1], [5], [5]])
  }

  /// N thread-ranks claim K numbers each from one counter made before a split, from their
  /// split groups at their own pace: every number of 0..<N·K goes to exactly one claim.
  @Test(arguments: [1, 3, 4])
  func counterClaimsAreDistinctAndCoverEveryNumber(ranks: Int) throws {
    let claims = 25
    let all = try LocalCommunicator.run(ranks: ranks) { comm -> [Int] in
      let counters = try comm.makeCounters(1)
      _ = try comm.split(colour: comm.rank % 2, key: 0)
      return try (0..<claims).map { _ in try counters.next() }
    }
    #expect(all.flatMap { $0 }.sorted() == Array(0..<(ranks * claims)))
    for mine in all { #expect(mine == mine.sorted(), "one rank's claims only grow") }
    #expect(throws: CommunicatorError.self) { try LocalCommunicator.single().makeCounters(2).next(2) }
    #expect(try LocalCommunicator.single().makeCounters(2).next(1) == 0)
  }
}

@Suite struct MPIEnvironmentTests {
  @Test func detectsLaunchers() {
    #expect(MPIEnvironment.launchedByMPI(environment: ["OMPI_COMM_WORLD_SIZE": "2"]))
    #expect(MPIEnvironment.launchedByMPI(environment: ["PMIX_RANK": "0"]))
    #expect(MPIEnvironment.launchedByMPI(environment: ["PMI_RANK": "3"]))
    #expect(!MPIEnvironment.launchedByMPI(environment: ["HOME": "/root", "SLURM_PROCID": "0"]))
  }

  /// MPI in this test process is a singleton (size 1, no launcher); the two-rank checks run
  /// under a real `mpirun` in CLITests.
  @Test func singletonWorldPassesTheChecksAndErrorsCarryMPIsMessage() throws {
    let world = try MPICommunicator.world()
    #expect(world.size == 1 && world.rank == 0 && world.backend == "mpi")
    let checks = CollectiveChecks.run(on: world)
    for check in checks { #expect(check.passed, "\(check.name): \(check.detail)") }
    #expect {
      try MPIEnvironment.check(8, "MPI_Bcast")  // MPI_ERR_ROOT in Open MPI
    } throws: { error in
      guard case CommunicatorError.mpi(let call, let code, let message) = error else { return false }
      return call == "MPI_Bcast" && code == 8 && message.lowercased().contains("root")
        && "\(error)".contains("MPI_Bcast failed with MPI error 8")
    }
    #expect((try? MPIEnvironment.check(0, "MPI_Barrier")) != nil)
  }
}

@Suite struct AllreduceBenchmarkTests {
  @Test func sizesGrowFourfold() {
    #expect(AllreduceBenchmark.sizes(upTo: 1024) == [4, 16, 64, 256, 1024])
    #expect(AllreduceBenchmark.sizes(upTo: 64 << 20).count == 13)
  }

  @Test func everyRankReportsTheSameTimings() throws {
    let tables = try LocalCommunicator.run(ranks: 2) { comm in
      try AllreduceBenchmark.measure(on: comm, sizes: [4, 4096], secondsPerSize: 0.005)
    }
    #expect(tables[0] == tables[1])
    #expect(tables[0].map(\.bytes) == [4, 4096])
    #expect(tables[0].allSatisfy { $0.iterations >= 3 && $0.seconds > 0 })
  }
}
