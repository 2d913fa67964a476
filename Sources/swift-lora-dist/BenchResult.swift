import Foundation
import LoRAKernels
import LoRARun

/// What `bench` measured for one training configuration (its JSON and its text).
struct BenchResult: Codable, Sendable {
  var model: String
  /// "sft" or "dpo" (DPO: the model FLOPs below leave out its reference pass).
  var objective: String
  /// DoRA (`--use-dora`).
  var dora: Bool
  /// A's initialisation (`--init`; PiSSA adds its frozen term's products).
  var initialization: String
  var batch: Int
  var seq: Int
  /// With `--min-seq`, lengths drawn from minSeq to seq; how the batch is split (`--balance`).
  var minSeq: Int?
  var balance: String
  /// Padding-free passes (`--padding-free`).
  var paddingFree: Bool
  var targets: String
  var rank: Int
  var threads: Int
  var ranks: Int
  /// Whether the ranks are threads of one process (`--local-ranks`); memory is then the process's.
  var threadRanks: Bool
  var blasCore: String
  var trainableParameters: Int
  var secondsPerStep: Double
  var tokensPerSecond: Double
  var gflopPerToken: Double
  var achievedGFLOPs: Double
  var sgemmPeakGFLOPs: Double
  var fractionOfPeak: Double
  /// "bf16" or "f32"; for bf16 the product route ("onednn" or "widened"), its peak on a
  /// model-sized product measured now, and the achieved share of it.
  var basePrecision: String
  /// "bf16" or "f32": what attention's products multiply in.
  var attentionPrecision: String
  var bf16Route: String?
  var bf16PeakGFLOPs: Double?
  var fractionOfBF16Peak: Double?
  /// Bytes the base's weights take.
  var baseMB: Double
  var peakResidentMB: Double
  /// Bytes of gradients one data-parallel step all-reduces.
  var gradientBytes: Int
  var bufferMB: Double
  /// Share of the timed steps spent in the gradient all-reduce (0 on one rank).
  var allreduceFraction: Double
  /// Share of the timed steps rank 0 waited for slower ranks before the all-reduce.
  var waitingFraction: Double
  /// Per rank (rank order): mean seconds per timed step by phase.
  var phases: [PhaseTimes]
  /// Per rank: peak resident memory and proportional memory (shared pages split).
  var rankPeakResidentMB: [Double]
  var rankProportionalMB: [Double]

  var text: String {
    let distributed =
      ranks == 1
      ? ""
      : "\nranks: \(ranks); gradient all-reduce \(formatBytes(gradientBytes)) per step = \(format(100 * allreduceFraction, 2))% of the step "
        + "(and \(format(100 * waitingFraction, 2))% waiting for the slowest rank); "
        + (threadRanks
          ? "ranks are threads of one process sharing one base (memory above is the process's)"
          : "memory per rank (peak resident / proportional): "
            + zip(rankPeakResidentMB, rankProportionalMB).map { "\(format($0, 0))/\(format($1, 0)) MB" }
            .joined(
              separator: ", ")
            + " = \(format(rankProportionalMB.reduce(0, +), 0)) MB in all")
    let bf16Line =
      bf16PeakGFLOPs.map { bf16Peak in
        "\n  = \(format(100 * (fractionOfBF16Peak ?? 0), 1))% of the bf16 peak measured now (\(bf16Route ?? "") products: \(format(bf16Peak, 1)) GFLOP/s)"
      } ?? ""
    return """
      bench (\(objective)): \(batch) × \(minSeq.map { "\($0)–" } ?? "")\(seq) tokens over \(ranks) rank(s)\(minSeq == nil || ranks == 1 ? "" : " (balanced by \(balance))")\(paddingFree ? ", padding-free" : ""), \(dora ? "DoRA" : "LoRA")\(initialization == "default" ? "" : " (\(initialization))") r=\(rank) on \(targets) (\(grouped(trainableParameters)) trainable), \(threads) BLAS thread(s) per rank (\(blasCore)); base in \(basePrecision) (\(format(baseMB, 0)) MB), attention in \(attentionPrecision)
      step: \(format(secondsPerStep, 3)) s, \(format(tokensPerSecond, 1)) tokens/s
      model FLOPs: \(format(gflopPerToken, 3)) GFLOP/token → \(format(achievedGFLOPs, 1)) GFLOP/s = \(format(100 * fractionOfPeak, 1))% of the sgemm peak measured now (\(format(sgemmPeakGFLOPs, 1)) GFLOP/s)\(bf16Line)
      memory: peak resident \(format(peakResidentMB, 0)) MB (activation and gradient buffers \(format(bufferMB, 0)) MB); gradients all-reduced per step: \(formatBytes(gradientBytes))
      time per step by phase:

      """ + phases.enumerated().map { "  rank \($0.offset): \($0.element.line)" }.joined(separator: "\n")
        + distributed
  }
}

/// What `bench --adapters K` measured: K adapters trained one after another, then fused.
struct FusedBenchResult: Codable {
  var model: String
  var adapters: Int
  var batch: Int
  var seq: Int
  var targets: String
  var rank: Int
  /// BLAS threads per rank of the fused run, and its ranks (thread-ranks of one process).
  var threads: Int
  var ranks: Int
  /// How the adapters trained alone used the same cores: ranks × BLAS threads each.
  var sequentialRanks: Int
  var sequentialThreads: Int
  var sequentialTokensPerSecond: Double
  var fusedTokensPerSecond: Double
  var fusedOverSequential: Double
  /// Activation and gradient buffers: one adapter's (reused in turn) and the fused stack's.
  var sequentialBufferMB: Double
  var fusedBufferMB: Double
  var peakResidentMB: Double

  var text: String {
    """
    bench: \(adapters) adapters × \(batch) × \(seq) tokens, LoRA r=\(rank) on \(targets), \(threads) BLAS thread(s) × \(ranks) rank(s)
    sequential: \(format(sequentialTokensPerSecond, 1)) tokens/s on \(sequentialRanks) rank(s) × \(sequentialThreads) thread(s) (buffers \(format(sequentialBufferMB, 0)) MB per adapter; one set suffices when they run one after another)
    fused:      \(format(fusedTokensPerSecond, 1)) tokens/s on \(ranks) rank(s) × \(threads) thread(s) (buffers \(format(fusedBufferMB, 0)) MB\(ranks > 1 ? " on rank 0" : ""))
    fused / sequential: \(format(fusedOverSequential, 2))×; peak resident \(format(peakResidentMB, 0)) MB
    """
  }
}
