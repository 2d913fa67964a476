import Foundation
import LoRAKernels
import LoRAModel

extension AdapterCombine {
  /// Writes the combination of `inputs` (one module of each adapter) into `module`'s A and B.
  /// - Returns: the share of the combined update's ‖·‖²_F that `module` keeps.
  static func fill(
    _ module: LoRAAdapter.Module, from inputs: [LoRAAdapter.Module], options: Options, seed: UInt64
  ) throws -> Double {
    let (out, input, k) = (module.outFeatures, module.inFeatures, module.rank)
    let weights = options.weights
    switch options.method {
    case .cat:
      // A rows: wᵢ·sᵢ·Aᵢ in fp32 as PEFT computes it ((A·w)·s); B columns: Bᵢ.
      var offset = 0
      for (source, weight) in zip(inputs, weights) {
        let (w, s) = (Float(weight), source.scale)
        for i in 0..<source.rank {
          for j in 0..<input { module.a[(offset + i) * input + j] = source.a[i * input + j] * w * s }
        }
        for i in 0..<out {
          for j in 0..<source.rank { module.b[i * k + offset + j] = source.b[i * source.rank + j] }
        }
        offset += source.rank
      }
      return 1
    case .svd:
      // Σ wᵢ·ΔWᵢ = [B₁ … Bₙ] · [w₁s₁A₁; …; wₙsₙAₙ]: its SVD through the stacked factors.
      let total = inputs.reduce(0) { $0 + $1.rank }
      var a = [Double](repeating: 0, count: total * input)
      var b = [Double](repeating: 0, count: out * total)
      var offset = 0
      for (source, weight) in zip(inputs, weights) {
        let factor = weight * Double(source.scale)
        for i in 0..<source.rank {
          for j in 0..<input { a[(offset + i) * input + j] = Double(source.a[i * input + j]) * factor }
        }
        for i in 0..<out {
          for j in 0..<source.rank { b[i * total + offset + j] = Double(source.b[i * source.rank + j]) }
        }
        offset += source.rank
      }
      if total <= min(out, input) {
        let svd = try DeltaSVD(
          a: a, b: b, scale: 1, rank: total, inFeatures: input, outFeatures: out, name: module.name)
        write(module, u: svd.u, uColumns: total, s: svd.values, vt: nil, v: svd.v, vColumns: total)
        return svd.energy(top: k)
      }
      return try truncate(LAPACK.product(b, a, m: out, n: input, k: total), into: module)
    case .ties, .dareLinear, .dareTies:
      var random = SeededRandom(seed: seed)
      let pruned = inputs.map { source -> [Double] in
        let delta = dense(source)
        return options.method == .ties
          ? magnitudePruned(delta, density: options.density)
          : randomPruned(delta, density: options.density, random: &random)
      }
      let merged =
        options.method == .dareLinear
        ? (0..<out * input).map { e in zip(pruned, weights).reduce(0) { $0 + $1.0[e] * $1.1 } }
        : disjointMerge(pruned, weights: weights)
      return try truncate(merged, into: module)
    }
  }

  /// ΔW = s·B·A of `source`: [OUT, IN].
  static func dense(_ source: LoRAAdapter.Module) -> [Double] {
    let product = LAPACK.product(
      source.b.values.map(Double.init), source.a.values.map(Double.init), m: source.outFeatures,
      n: source.inFeatures, k: source.rank)
    return product.map { $0 * Double(source.scale) }
  }

  /// `delta` with all but its int(density·count) largest magnitudes zeroed (PEFT's
  /// magnitude pruning; density 1 keeps everything).
  static func magnitudePruned(_ delta: [Double], density: Double) -> [Double] {
    guard density < 1 else { return delta }
    let keep = Int(density * Double(delta.count))
    guard keep > 0 else { return [Double](repeating: 0, count: delta.count) }
    let order = delta.indices.sorted { abs(delta[$0]) > abs(delta[$1]) }
    var out = [Double](repeating: 0, count: delta.count)
    for index in order.prefix(keep) { out[index] = delta[index] }
    return out
  }

  /// `delta` with each entry kept with probability `density` and rescaled by 1/density
  /// (DARE; density 1 keeps everything).
  static func randomPruned(_ delta: [Double], density: Double, random: inout SeededRandom) -> [Double] {
    guard density < 1 else { return delta }
    return delta.map { value in
      Double(random.next() >> 11) / Double(1 << 53) < density ? value / density : 0
    }
  }

  /// TIES' merge: the sign of each entry elected by the sum of the (unweighted) pruned
  /// updates, then the mean of the weighted entries that agree with it.
  static func disjointMerge(_ pruned: [[Double]], weights: [Double]) -> [Double] {
    let count = pruned[0].count
    var merged = [Double](repeating: 0, count: count)
    for e in 0..<count {
      let elected: Double = pruned.reduce(0) { $0 + $1[e] } >= 0 ? 1 : -1
      var (sum, agreeing) = (0.0, 0)
      for (update, weight) in zip(pruned, weights) {
        let value = update[e]
        let sign: Double = value > 0 ? 1 : (value < 0 ? -1 : 0)
        if sign == elected {
          sum += value * weight
          agreeing += 1
        }
      }
      merged[e] = sum / Double(max(agreeing, 1))
    }
    return merged
  }

  /// The top-`module.rank` SVD of `delta` [OUT, IN] written as B = U·Σ, A = Vᵀ.
  /// - Returns: the share of ‖delta‖²_F kept.
  static func truncate(_ delta: [Double], into module: LoRAAdapter.Module) throws -> Double {
    let (out, input) = (module.outFeatures, module.inFeatures)
    let (u, s, vt) = try LAPACK.svd(delta, rows: out, columns: input, subject: "\(module.name) combined ΔW")
    let full = min(out, input)
    write(module, u: u, uColumns: full, s: s, vt: vt, v: nil, vColumns: full)
    let total = s.reduce(0) { $0 + $1 * $1 }
    return total > 0 ? s.prefix(module.rank).reduce(0) { $0 + $1 * $1 } / total : 1
  }

  /// B [OUT, k] = U_k·Σ_k and A [k, IN] = V_kᵀ from u [OUT, uColumns] and either vt [*, IN]
  /// or v [IN, vColumns]; directions past `s.count` are zero.
  static func write(
    _ module: LoRAAdapter.Module, u: [Double], uColumns: Int, s: [Double], vt: [Double]?, v: [Double]?,
    vColumns: Int
  ) {
    let (out, input, k) = (module.outFeatures, module.inFeatures, module.rank)
    for j in 0..<min(k, s.count) {
      for i in 0..<out { module.b[i * k + j] = Float(u[i * uColumns + j] * s[j]) }
      for i in 0..<input {
        module.a[j * input + i] = Float(vt.map { $0[j * input + i] } ?? v![i * vColumns + j])
      }
    }
  }
}
