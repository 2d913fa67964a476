import Foundation

/// Causal-LM cross-entropy fused with the frozen output head, computed in chunks of trained
/// rows only, so the [N, V] logits are never held whole and untrained positions cost nothing.
public enum OutputLoss {
  /// The sum of −log softmax(h·Eᵀ)[target] over rows whose target is ≥ 0, and, when `dHidden`
  /// is given, its gradient times `gradientScale` written into dHidden (zero on untrained
  /// rows). The head is frozen: no gradient for it.
  /// - hidden, dHidden: [N, D]; head: [V, D]; targets: N ids or −1; scratch: see `scratchCount`.
  /// - Returns: the loss summed over trained rows (Double) and their count.
  public static func forwardBackward(
    dHidden: Tensor?, hidden: Tensor, head: Tensor, targets: [Int32], gradientScale: Float, scratch: Tensor,
    chunkRows: Int
  ) -> (lossSum: Double, count: Int) {
    forwardBackward(
      dHidden: dHidden, hidden: hidden, head: .f32(head), targets: targets, gradientScale: gradientScale,
      scratch: scratch, chunkRows: chunkRows)
  }

  /// The same with a frozen head of either precision; `rowLoss`, when given, is called with
  /// each trained row and its loss (for losses over whole sequences, e.g. DPO's log-probabilities).
  public static func forwardBackward(
    dHidden: Tensor?, hidden: Tensor, head: FrozenMatrix, targets: [Int32], gradientScale: Float,
    scratch: Tensor, chunkRows: Int, rowLoss: ((_ row: Int, _ loss: Double) -> Void)? = nil
  ) -> (lossSum: Double, count: Int) {
    // The head's products go to `.head` (inside this, the clock's innermost phase).
    return PhaseClock.measure(.loss) {
      let width = head.shape.last ?? 0
      let vocabulary = head.count / max(width, 1)
      precondition(
        hidden.count == targets.count * width, "loss over \(targets.count) targets of hidden \(hidden.shape)")
      precondition(
        scratch.count >= scratchCount(chunkRows: chunkRows, width: width, vocabulary: vocabulary),
        "loss scratch too small")
      dHidden?.zero()
      let trained = targets.indices.filter { targets[$0] >= 0 }
      let rowsBuffer = scratch.base
      let logits = scratch.base + chunkRows * width
      var lossSum = 0.0
      var rowLosses = [Double](repeating: 0, count: chunkRows)
      for start in stride(from: 0, to: trained.count, by: chunkRows) {
        let rows = trained[start..<min(start + chunkRows, trained.count)]
        for (i, row) in rows.enumerated() {
          (rowsBuffer + i * width).update(from: hidden.base + row * width, count: width)
        }
        // logits [c, V] = rows [c, D] · headᵀ (for fp32, the sgemm call it always was)
        let rowsView = scratch.view(offset: 0, shape: [rows.count, width])
        let logitsView = scratch.view(offset: chunkRows * width, shape: [rows.count, vocabulary])
        head.forward(into: logitsView, rowsView, phase: .head)
        let withGradient = dHidden != nil
        rowLosses.withUnsafeMutableBufferPointer { losses in
          let (lossList, logitBase) = (UncheckedSendable(losses), UncheckedSendable(logits))
          Parallel.forRanges(rows.count, grain: 8) { range, _ in
            for i in range {
              let z = logitBase.value + i * vocabulary
              let target = Int(targets[rows[start + i]])
              precondition(target < vocabulary, "target \(target) outside the vocabulary of \(vocabulary)")
              let targetLogit = z[target]
              let maximum = VectorMath.maximum(z, count: vocabulary)
              // z becomes exp(z − max): the logits are not needed after this row's loss.
              let sum = VectorMath.exponentiate(z, count: vocabulary, shift: maximum)
              lossList.value[i] = Double(maximum) + log(sum) - Double(targetLogit)
              if withGradient {
                // dlogits = (softmax − onehot)·scale, in place.
                VectorMath.scale(z, count: vocabulary, by: Float(Double(gradientScale) / sum))
                z[target] -= gradientScale
              }
            }
          }
        }
        lossSum += rowLosses[0..<rows.count].reduce(0, +)
        if let rowLoss {
          for (i, row) in rows.enumerated() { rowLoss(row, rowLosses[i]) }
        }
        if let dHidden {
          // d rows [c, D] = dlogits [c, V] · head [V, D], then scattered back.
          head.inputGradient(into: rowsView, logitsView, phase: .head)
          for (i, row) in rows.enumerated() {
            (dHidden.base + row * width).update(from: rowsBuffer + i * width, count: width)
          }
        }
      }
      return (lossSum, trained.count)
    }
  }

  /// Trained rows per chunk in training: 256 (docs/benchmarks.md: 64 rows cost 28% more head
  /// time on one core, 128 6% more, 512 the same), or `SWIFT_LORA_DIST_HEAD_CHUNK` when it is a
  /// whole number from 1 to 4096 — a knob for measuring on machines where ranks share an L3
  /// (a chunk's logits are rows × vocabulary floats: 50 MB for SmolLM2 at 256).
  public static let trainingChunkRows: Int = {
    let text = ProcessInfo.processInfo.environment["SWIFT_LORA_DIST_HEAD_CHUNK"] ?? ""
    return Int(text).flatMap { (1...4096).contains($0) ? $0 : nil } ?? 256
  }()

  /// Floats of scratch `forwardBackward` needs.
  public static func scratchCount(chunkRows: Int, width: Int, vocabulary: Int) -> Int {
    chunkRows * (width + vocabulary)
  }
}
