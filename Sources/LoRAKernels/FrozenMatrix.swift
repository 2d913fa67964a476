/// A frozen weight of the base model, `[OUT, IN]` (PyTorch's `nn.Linear` layout), held in
/// fp32 or in bf16: the operand of every frozen product of forward and backward passes.
///
/// The fp32 case is the `Tensor` itself and runs the same OpenBLAS calls as before bf16
/// existed (bit for bit). The bf16 case runs through oneDNN's bf16 matmul where the CPU
/// multiplies bf16 natively, and elsewhere widens the weight to fp32 a block of rows at a
/// time into a per-thread scratch and multiplies with OpenBLAS (`BF16Products`).
public enum FrozenMatrix: @unchecked Sendable {
  case f32(Tensor)
  case bf16(BF16Tensor)

  /// `[OUT, IN]` for a linear layer, `[V, D]` for an embedding or output head.
  public var shape: [Int] {
    switch self {
    case .f32(let t): return t.shape
    case .bf16(let t): return t.shape
    }
  }

  /// Number of elements.
  public var count: Int {
    switch self {
    case .f32(let t): return t.count
    case .bf16(let t): return t.count
    }
  }

  /// Bytes its elements take in memory.
  public var bytes: Int {
    switch self {
    case .f32(let t): return 4 * t.count
    case .bf16(let t): return 2 * t.count
    }
  }

  /// The precision the elements are stored in.
  public var precision: StoredPrecision {
    switch self {
    case .f32: return .f32
    case .bf16: return .bf16
    }
  }

  /// The fp32 tensor itself, nil for bf16.
  public var f32: Tensor? {
    if case .f32(let t) = self { return t }
    return nil
  }

  /// `out = x · Wᵀ + beta · out`: the forward product of a linear layer.
  /// Its time goes to `phase` on the bound `PhaseClock`.
  /// - out: `[M, OUT]`; x: `[M, IN]`.
  public func forward(into out: Tensor, _ x: Tensor, beta: Float = 0, phase: Phase = .frozen) {
    PhaseClock.measure(phase) {
      switch self {
      case .f32(let w):
        GEMM.multiply(into: out, x, w, transposeB: .transposed, beta: beta)
      case .bf16(let w):
        BF16Products.multiply(into: out, x, w, transposeB: .transposed, beta: beta)
      }
    }
  }

  /// `dx = dy · W + beta · dx`: the input gradient of a linear layer (or, for an output head,
  /// the hidden states' gradient from the logits').
  /// - dx: `[M, IN]`; dy: `[M, OUT]`.
  public func inputGradient(into dx: Tensor, _ dy: Tensor, beta: Float = 0, phase: Phase = .frozen) {
    PhaseClock.measure(phase) {
      switch self {
      case .f32(let w):
        GEMM.multiply(into: dx, dy, w, beta: beta)
      case .bf16(let w):
        BF16Products.multiply(into: dx, dy, w, transposeB: .none, beta: beta)
      }
    }
  }

  /// Rows `rows` of the matrix, in fp32, into `destination`: `[rows.count, IN]`.
  public func copyRows(_ rows: Range<Int>, into destination: Tensor) {
    switch self {
    case .f32(let w):
      let width = w.shape.last ?? 1
      destination.copy(from: w.view(offset: rows.lowerBound * width, shape: [rows.count, width]))
    case .bf16(let w):
      w.widenRows(rows, into: destination)
    }
  }

  /// Whether both are the same held tensor (a tied output head and embedding are).
  public func isIdentical(to other: FrozenMatrix) -> Bool {
    switch (self, other) {
    case (.f32(let a), .f32(let b)): return a === b
    case (.bf16(let a), .bf16(let b)): return a === b
    default: return false
    }
  }

  /// The elements in fp32, as a new array.
  public var values: [Float] { widened().values }

  /// The elements in fp32: the tensor itself, or a widened copy of a bf16 one.
  public func widened() -> Tensor {
    switch self {
    case .f32(let t): return t
    case .bf16(let t): return t.widened()
    }
  }
}

/// How a frozen matrix's elements are stored.
public enum StoredPrecision: String, Sendable, Codable, CaseIterable {
  case f32
  case bf16
}
