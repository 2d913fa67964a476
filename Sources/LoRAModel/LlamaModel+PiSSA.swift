import LoRAKernels

/// PiSSA's initialisation (PEFT's `init_lora_weights="pissa"` / `"pissa_niter_N"`): each
/// module starts from W0's top-r singular triplets, A = √(S_r/s)·V_rᵀ and B = U_r·√(S_r/s),
/// so s·B·A is W0's best rank-r part. PEFT then writes W0 − s·B₀·A₀ as a new base; here the
/// base stays shared and the adapter holds −s·B₀·A₀ as a frozen low-rank term (`initial`),
/// so the model equals the base at step 0 and several PiSSA adapters still share one base.
extension LlamaModel {
  /// Sets A, B and the frozen −B₀, A₀ of every module of a PiSSA adapter from the base
  /// (randomized SVDs draw from `seed`); nothing for other adapters.
  /// - Throws: `LAPACKError` naming the module when an SVD fails.
  public func initializePiSSA(_ adapter: LoRAAdapter, seed: UInt64) throws(LAPACKError) {
    guard let pissa = adapter.config.pissa, let initial = adapter.initial else { return }
    var random = SeededRandom(seed: seed ^ 0x5069_5353_41)
    for (m, frozen) in zip(adapter.modules, initial.modules) {
      let (out, input, r) = (m.outFeatures, m.inFeatures, m.rank)
      let w = weights.layers[m.layer].matrix(m.target).widened().values.map(Double.init)
      let (u, s, vt): (u: [Double], s: [Double], vt: [Double])
      if let iterations = pissa.iterations {
        (u, s, vt) = try Self.randomizedSVD(
          w, rows: out, columns: input, rank: r, iterations: iterations, &random, subject: m.name)
      } else {
        (u, s, vt) = try LAPACK.svd(w, rows: out, columns: input, subject: m.name)
      }
      let k = s.count
      let scale = Double(m.scale)
      for i in 0..<r {
        let root = (s[i] / scale).squareRoot()
        for j in 0..<input { m.a[i * input + j] = Float(root * vt[i * input + j]) }
        for j in 0..<out { m.b[j * r + i] = Float(root * u[j * k + i]) }
      }
      frozen.a.copy(from: m.a)
      frozen.b.copy(from: m.b)
      frozen.b.scale(by: -1)
    }
  }

  /// The top-`rank` SVD of W [M, N] by Halko et al.'s randomized range finder with
  /// `iterations` subspace iterations, as `torch.svd_lowrank` (which PEFT's pissa_niter_N
  /// calls): Q = orth(W·Ω), then Q = orth(W·orth(Wᵀ·Q)) per iteration, and the SVD of Qᵀ·W.
  /// - Returns: u [M, rank], s [rank], vt [rank, N], row-major.
  static func randomizedSVD(
    _ w: [Double], rows m: Int, columns n: Int, rank: Int, iterations: Int, _ random: inout SeededRandom,
    subject: String
  ) throws(LAPACKError) -> (u: [Double], s: [Double], vt: [Double]) {
    let draws = Tensor(zeros: [n * rank])
    random.fillNormal(draws)
    let omega = draws.values.map(Double.init)
    var q = try LAPACK.qr(
      LAPACK.product(w, omega, m: m, n: rank, k: n), rows: m, columns: rank, subject: subject
    ).q
    for _ in 0..<iterations {
      let back = try LAPACK.qr(
        LAPACK.product(w, q, m: n, n: rank, k: m, transposeA: true), rows: n, columns: rank, subject: subject
      ).q
      q = try LAPACK.qr(
        LAPACK.product(w, back, m: m, n: rank, k: n), rows: m, columns: rank, subject: subject
      ).q
    }
    // Qᵀ·W [rank, N] = Ub·S·Vᵀ; U = Q·Ub.
    let small = LAPACK.product(q, w, m: rank, n: n, k: m, transposeA: true)
    let (ub, s, vt) = try LAPACK.svd(small, rows: rank, columns: n, subject: subject)
    return (LAPACK.product(q, ub, m: m, n: rank, k: rank), s, vt)
  }
}
