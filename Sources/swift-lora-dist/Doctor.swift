import ArgumentParser
import Foundation
import LoRAComm
import LoRAKernels

/// `swift-lora-dist doctor`: the first command to run on a new machine or cluster.
struct Doctor: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Check ranks, BLAS speed, model access and MPI collectives before training.",
    discussion: """
      Every rank reports its host, BLAS kernel and threads, measured sgemm speed (and \
      the bf16 path oneDNN takes for frozen products, with its speed) and \
      whether it can read the model. Rank 0 verifies the collectives the trainer uses, \
      times all-reduce from 4 B to --max-size, and ends with a one-line verdict. \
      The exit status is 1 when something would stop training (an unreadable model, \
      a failed collective, a BLAS kernel that computes wrong products).

      Examples:
        swift-lora-dist doctor --model model.gguf
        mpirun -np 2 swift-lora-dist doctor --model model.gguf
        mpirun -np 8 --hostfile hosts swift-lora-dist doctor --json
        OPENBLAS_CORETYPE=SkylakeX swift-lora-dist doctor --threads 1
      """)

  @Option(help: "A base model (GGUF file or Hugging Face folder) every rank must be able to read.")
  var model: String?

  @Option(help: "BLAS threads per rank (default: OPENBLAS_NUM_THREADS or all cores).")
  var threads: Int?

  @Option(name: .customLong("max-size"), help: "Largest all-reduce payload in MiB.")
  var maxSizeMiB: Int = 64

  @Flag(help: "Shorter measurements (about 10x faster, noisier figures).")
  var quick = false

  @Flag(help: "Print the report as one JSON document instead of text.")
  var json = false

  func validate() throws {
    if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
    if maxSizeMiB < 1 || maxSizeMiB > 4096 {
      throw ValidationError("--max-size must be between 1 and 4096 MiB, got \(maxSizeMiB)")
    }
  }

  func run() throws {
    let report = try Ranks.run { comm in
      let report = try DoctorProbe(options: self).collect(on: comm)
      if comm.rank == 0 { print(json ? try report.jsonText() : report.text) }
      return report
    }
    if !report.ready { throw ExitCode.failure }
  }
}

/// The measurements behind `doctor`, run on every rank of a communicator.
struct DoctorProbe {
  var model: String?
  var threads: Int?
  var maxBytes: Int
  var sgemmSeconds: Double
  var allreduceSeconds: Double

  init(options: Doctor) {
    model = options.model
    threads = options.threads
    maxBytes = options.maxSizeMiB << 20
    sgemmSeconds = options.quick ? 0.05 : 0.5
    allreduceSeconds = options.quick ? 0.02 : 0.2
  }

  init(model: String?, threads: Int?, maxBytes: Int, sgemmSeconds: Double, allreduceSeconds: Double) {
    self.model = model
    self.threads = threads
    self.maxBytes = maxBytes
    self.sgemmSeconds = sgemmSeconds
    self.allreduceSeconds = allreduceSeconds
  }

  /// Measures this rank, runs the collective checks and the all-reduce table, and returns
  /// the same assessed report on every rank.
  func collect(on comm: any Communicator) throws -> DoctorReport {
    if let threads { BLAS.threads = threads }
    let host = (try? MPIEnvironment.isActive ? MPIEnvironment.processorName() : nil) ?? DoctorProbe.hostName()

    // sgemm (and bf16) alone: ranks take turns so each sees the machine as a single process would.
    var alone = 0.0
    var bf16: Double?
    for turn in 0..<comm.size {
      try comm.barrier()
      if turn == comm.rank {
        alone = GEMM.measure(minimumSeconds: sgemmSeconds).gflops
        bf16 = BF16MatMul.available ? try? BF16Products.measure(minimumSeconds: sgemmSeconds).gflops : nil
      }
    }
    try comm.barrier()
    let together = GEMM.measure(minimumSeconds: sgemmSeconds)

    let checks = CollectiveChecks.run(on: comm)
    let info = DoctorReport.RankInfo(
      rank: comm.rank, host: host, processID: ProcessInfo.processInfo.processIdentifier,
      cpus: ProcessInfo.processInfo.activeProcessorCount,
      memoryGiB: Double(ProcessInfo.processInfo.physicalMemory) / Double(1 << 30),
      blasCore: BLAS.coreName, blasThreads: BLAS.threads, blasThreading: BLAS.threading,
      blasCoreReplaced: BLAS.replacedCore,
      cpuFeatures: BLAS.cpuVectorFeatures(), sgemmError: GEMM.verify(),
      sgemmAloneGFLOPs: alone, sgemmTogetherGFLOPs: together.gflops, bf16Path: Self.bf16Path(),
      bf16AloneGFLOPs: bf16,
      model: model.map(ModelAccess.check), checks: checks, topology: CPUTopology.current())
    let encoded = try JSONEncoder().encode(info)
    let ranks = try comm.allgather([UInt8](encoded)).map {
      try JSONDecoder().decode(DoctorReport.RankInfo.self, from: Data($0))
    }

    var table: [DoctorReport.AllreduceRow] = []
    if comm.size > 1 {
      let timings = try AllreduceBenchmark.measure(
        on: comm, sizes: AllreduceBenchmark.sizes(upTo: maxBytes), secondsPerSize: allreduceSeconds)
      table = timings.map {
        .init(
          bytes: $0.bytes, iterations: $0.iterations, microseconds: $0.seconds * 1e6,
          algorithmGBps: $0.algorithmGBps, busGBps: $0.busGBps(ranks: comm.size))
      }
    }
    return DoctorReport.assess(
      version: SwiftLoRADist.version, backend: comm.backend,
      mpiLibrary: MPIEnvironment.isActive ? (try? MPIEnvironment.libraryVersion())?.firstLine : nil,
      sgemmShape: "\(together.m)×\(together.n)×\(together.k)", ranks: ranks, allreduce: table)
  }

  /// Which path bf16 frozen products take on this rank, and what `--base-precision auto`
  /// holds the base in: oneDNN's kernel on native bf16, fp32 sgemm over widened blocks where
  /// oneDNN would only emulate bf16, or none.
  static func bf16Path() -> String {
    let library = "oneDNN \(BF16MatMul.libraryVersion), \(BF16MatMul.instructionSet)"
    guard BF16MatMul.available else {
      return "unavailable (\(library): bf16 products need AVX-512); auto holds the base in f32"
    }
    guard BF16Products.route == .oneDNN else {
      return "bf16 storage, products on sgemm over widened blocks (\(library) would only emulate bf16: "
        + "no AVX512_BF16); auto holds the base in f32"
    }
    let kernel =
      (try? BF16MatMul.implementation(m: 1024, n: 1536, k: 576, transposeB: .transposed, threads: 1)) ?? "?"
    return "native (\(library), \(kernel) per kernel thread); auto holds the base in bf16"
  }

  /// The kernel's host name, without a DNS lookup.
  static func hostName() -> String {
    let name = (try? String(contentsOfFile: "/proc/sys/kernel/hostname", encoding: .utf8))?
      .trimmingCharacters(in: .whitespacesAndNewlines)
    return name.flatMap { $0.isEmpty ? nil : $0 } ?? ProcessInfo.processInfo.environment["HOSTNAME"]
      ?? "localhost"
  }
}

extension DoctorReport {
  func jsonText() throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return String(decoding: try encoder.encode(self), as: UTF8.self)
  }
}

extension String {
  /// "Open MPI v4.1.4" of "Open MPI v4.1.4, package: Debian OpenMPI, …".
  fileprivate var firstLine: String {
    let line = split(separator: "\n", maxSplits: 1).first ?? ""
    return String(line.split(separator: ",", maxSplits: 1).first ?? "").trimmingCharacters(in: .whitespaces)
  }
}
