import Testing

@testable import LoRAKernels

/// Finite-difference gradient checking: perturbs each element of `input` by ±eps, evaluates
/// the scalar `loss`, and returns the relative L2 error between `analytic` and the central
/// differences.
func finiteDifferenceError(input: Tensor, analytic: Tensor, eps: Float = 1e-3, loss: () -> Double) -> Double {
  precondition(input.count == analytic.count)
  var differenceSquared = 0.0
  var referenceSquared = 0.0
  for i in 0..<input.count {
    let saved = input[i]
    input[i] = saved + eps
    let plus = loss()
    input[i] = saved - eps
    let minus = loss()
    input[i] = saved
    let numeric = (plus - minus) / (2 * Double(eps))
    differenceSquared += (numeric - Double(analytic[i])) * (numeric - Double(analytic[i]))
    referenceSquared += numeric * numeric
  }
  return (differenceSquared / max(referenceSquared, 1e-30)).squareRoot()
}

/// Σ weights·values in Double: a scalar loss whose gradient with respect to `values` is `weights`.
func weightedSum(_ values: Tensor, _ weights: Tensor) -> Double {
  zip(values.values, weights.values).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
}
