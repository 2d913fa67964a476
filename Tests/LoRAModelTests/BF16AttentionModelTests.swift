import Foundation
import LoRAKernels
import Testing

@testable import LoRAFormats
@testable import LoRAModel

/// Attention in bf16 in a whole model: where it is chosen, and that a model's loss and LoRA
/// gradients with it stay within bf16 rounding of the same model with fp32 attention (the
/// mode it must equal, up to rounding).
@Suite(.serialized) struct BF16AttentionModelTests {
  let base = BF16BaseTests()

  /// bf16 attention comes with a bf16 base on oneDNN's route (where its products have a real
  /// kernel), fp32 with the widened route, an fp32 base or a cache; the setting overrides.
  @Test func attentionFollowsTheBaseUnlessSet() throws {
    let f32 = try base.load(Fixtures.path("tiny-tied"), .f32)
    #expect(f32.attentionRoute == .f32)
    guard BF16MatMul.available else { return }
    let bf16 = try base.load(Fixtures.path("tiny-tied"), .bf16)
    base.on(.widened) { #expect(bf16.attentionRoute == .f32) }
    base.on(.oneDNN) { #expect(bf16.attentionRoute == (Attention.bf16Available ? .bf16 : .f32)) }
    bf16.attentionPrecision = .f32
    base.on(.oneDNN) { #expect(bf16.attentionRoute == .f32) }
    f32.attentionPrecision = .bf16
    #expect(f32.attentionRoute == .bf16)
  }

  /// 2 sequences of 60 tokens (the fixtures hold 64 positions): the loss within 2e-3 relative and
  /// every LoRA gradient's cosine ≥ 0.999 against fp32 attention, and not equal to it.
  @Test(
    .enabled(if: Attention.bf16Available, "oneDNN has no bf16 products on this CPU"),
    arguments: ["tiny-tied", "tiny-qwen2"])
  func bf16AttentionIsWithinRoundingOfF32Attention(fixture: String) throws {
    let model = try base.load(Fixtures.path(fixture), .bf16)
    let (reference, result) = try base.on(.oneDNN) {
      model.attentionPrecision = .f32
      let reference = try base.lossAndGradients(model, length: 60)
      model.attentionPrecision = nil
      #expect(model.attentionRoute == .bf16)
      return (reference, try base.lossAndGradients(model, length: 60))
    }
    #expect(abs(result.loss - reference.loss) <= 2e-3 * reference.loss, "\(result.loss) vs \(reference.loss)")
    #expect(result.loss != reference.loss)  // attention really ran in bf16
    for (i, (g, r)) in zip(result.modules, reference.modules).enumerated() {
      #expect(base.cosine(g, r) >= 0.999, "module \(i): cosine \(base.cosine(g, r))")
    }
  }
}
