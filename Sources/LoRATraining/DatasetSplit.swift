import Foundation
import LoRAKernels

extension Dataset {
  /// Splits a dataset's examples into training and validation sets, reproducibly.
  ///
  /// The N example indices are shuffled with `seed`; validation takes the first
  /// ⌈fraction·N⌉ of that order (at least 1 when fraction > 0; a product within 1e-9 of an
  /// integer counts as that integer), training the rest. Both keep file order.
  ///
  /// - Throws: `DataError.invalidOption` when `validationFraction` is not in [0, 1) or the
  ///   split would leave no training example.
  /// - groupsOf: examples that stay together, in order (2 for DPO's pairs): the fraction and
  ///   the shuffle count groups.
  public static func split(_ dataset: Dataset, validationFraction: Double, seed: UInt64, groupsOf: Int = 1)
    throws(DataError)
    -> (train: [Example], validation: [Example])
  {
    guard validationFraction >= 0 && validationFraction < 1 else {
      throw .invalidOption("validation fraction must be in [0, 1), got \(validationFraction)")
    }
    let count = dataset.examples.count / groupsOf
    guard validationFraction > 0 else { return (dataset.examples, []) }
    let validationCount = max(1, Int((validationFraction * Double(count) - 1e-9).rounded(.up)))
    guard validationCount < count else {
      throw .invalidOption(
        "validation fraction \(validationFraction) of \(count) examples leaves no training example")
    }
    let order = SeededRandom.permutation(count: count, seed: seed)
    var isValidation = [Bool](repeating: false, count: count)
    for index in order.prefix(validationCount) { isValidation[index] = true }
    var train: [Example] = []
    var validation: [Example] = []
    train.reserveCapacity(count - validationCount)
    validation.reserveCapacity(validationCount)
    for (index, example) in dataset.examples.enumerated() {
      if isValidation[index / groupsOf] {
        validation.append(example)
      } else {
        train.append(example)
      }
    }
    return (train, validation)
  }
}
