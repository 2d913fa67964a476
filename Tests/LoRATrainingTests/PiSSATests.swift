import Foundation
import LoRAComm
import LoRAFormats
import LoRAKernels
import Testing

@testable import LoRAModel
@testable import LoRATraining

/// PiSSA: A and B from W0's top-r singular triplets (PEFT's init_lora_weights="pissa", from
/// scripts/make_variant_fixtures.py), the model equal to the base at step 0 with the base
/// still shared (the initial term frozen in the adapter), training on one and two ranks,
/// and the plain rank-2r adapter every file format takes giving the trained model's logits.
@Suite struct PiSSATests {
  let base = TrainerTests()

  func adapter(_ model: LlamaModel, init initialization: String = "pissa", seed: UInt64 = 7) throws
    -> LoRAAdapter
  {
    let adapter = try LoRAAdapter(
      config: LoRAConfig(r: 4, loraAlpha: 8, targetModules: ["all-linear"], initialization: initialization),
      model: model.config, seed: seed)
    try model.initializeFromBase(adapter, seed: seed)
    return adapter
  }

  /// Logits of every position: the base alone, or with `adapter` and its frozen term.
  func logits(_ model: LlamaModel, _ adapter: LoRAAdapter?, frozen: LoRAAdapter? = nil) -> [Float] {
    let tokens: [Int32] = [1, 17, 42, 5, 88, 63, 30, 7, 64]
    let a = LlamaActivations(
      config: model.config, batch: 1, length: tokens.count, keepForBackward: false,
      slots: adapter.map { [.init(adapter: $0, sequences: 0..<1, frozen: frozen)] } ?? [])
    let hidden = model.forward(tokens: tokens, activations: a)
    let out = Tensor(zeros: [tokens.count, model.config.vocabularySize])
    model.logits(into: out, hidden: hidden)
    return out.values
  }

  func relative(_ a: [Float], _ b: [Float]) -> Double {
    ReferenceSupport.relativeError(a, b.map(Double.init))
  }

  @Test func startsFromW0sTopSingularTripletsAsPEFT() throws {
    struct Fixture: Decodable { var products: [String: [Double]] }
    let fixture = try JSONDecoder().decode(
      Fixture.self,
      from: Data(contentsOf: PEFTReferenceTests.fixtures.appendingPathComponent("peft-tiny/pissa.json")))
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let adapter = try adapter(model)
    let initial = try #require(adapter.initial)
    #expect(fixture.products.count == adapter.modules.count)
    for (m, frozen) in zip(adapter.modules, initial.modules) {
      let product = Tensor(zeros: [m.outFeatures, m.inFeatures])
      LowRank.merge(into: product, a: m.a, b: m.b, scale: m.scale)
      let expected = try #require(fixture.products[m.name], "no product for \(m.name)")
      let error = ReferenceSupport.relativeError(product.values, expected)
      #expect(error <= 1e-5, "\(m.name): s·B·A against PEFT's, relative error \(error)")
      #expect(frozen.a.values == m.a.values && frozen.b.values == m.b.values.map { -$0 })
    }
  }

  /// Bit for bit, on an fp32 and a bf16 base: the adapter's two terms are summed apart
  /// (exactly 0 at step 0) before they reach the base's output.
  @Test(arguments: ["pissa", "pissa_niter_4"], [StoredPrecision.f32, .bf16])
  func modelEqualsTheBaseAtStepZero(initialization: String, precision: StoredPrecision) throws {
    let (model, _) = try LlamaModel.load(ModelFiles.open(TrainerTests.tinyModel), precision: precision)
    let adapter = try adapter(model, init: initialization)
    let plain = logits(model, nil)
    let start = logits(model, adapter, frozen: adapter.initial)
    #expect(
      start.map(\.bitPattern) == plain.map(\.bitPattern), "\(initialization) at step 0 against the base")
    // Without its frozen term the adapter does change the model: the check can fail.
    #expect(relative(logits(model, adapter), plain) > 1e-2)
  }

  /// The randomized SVD captures nearly the energy of the exact top-r part.
  @Test func fastSVDApproachesTheFullOne() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let (full, fast) = (try adapter(model), try adapter(model, init: "pissa_niter_4"))
    for (f, q) in zip(full.modules, fast.modules) {
      func energy(_ m: LoRAAdapter.Module) -> Double {
        let p = Tensor(zeros: [m.outFeatures, m.inFeatures])
        LowRank.merge(into: p, a: m.a, b: m.b, scale: m.scale)
        return p.values.reduce(0) { $0 + Double($1) * Double($1) }
      }
      #expect(energy(q) >= 0.9 * energy(f), "\(f.name): \(energy(q)) of \(energy(f))")
      #expect(energy(q) <= energy(f) * (1 + 1e-5))
    }
  }

  func member(init initialization: String = "pissa") -> FusedTrainer.Member {
    .init(
      config: LoRAConfig(r: 4, loraAlpha: 8, targetModules: ["all-linear"], initialization: initialization),
      initialisationSeed: 3, train: base.counting(40, seed: 3), validation: base.counting(8, seed: 4),
      options: TrainingOptions(steps: 4, batchSize: 8, microBatch: 4, learningRate: 1e-2, seed: 3))
  }

  @Test func trainsOnTwoRanksAsOnOneAndExportsAsPlainRank2r() throws {
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    let one = try FusedTrainer(model: model, members: [member()], padID: 0)
    let state = one.trainers[0]
    #expect(state.frozen === state.adapter.initial)
    let start = try state.validationLoss()
    let frozenBefore = try #require(state.adapter.initial).parameters.values
    var losses: [Double] = []
    while !one.finished { for (_, m) in try one.update() { losses.append(m.loss) } }
    #expect(losses.last! < losses.first!)
    #expect(try state.validationLoss() < start)
    // The initial term stays as it was; A and B moved.
    #expect(state.adapter.initial!.parameters.values == frozenBefore)
    let shared = UncheckedModel(model: model)
    let given = UncheckedSendable([member()])
    let many = try LocalCommunicator.run(ranks: 2) { comm in
      let group = try FusedTrainer(model: shared.model, members: given.value, padID: 0, communicator: comm)
      while !group.finished { _ = try group.update() }
      return group.parameters.values
    }
    #expect(many[0] == many[1])
    #expect(DataParallelTests.relative(many[0], one.parameters.values) <= 1e-5)

    // Plain LoRA of rank 2r (A' = [A; A₀], B' = [B, −B₀], scale kept): the trained model's logits.
    let trained = logits(model, state.adapter, frozen: state.adapter.initial)
    let plain = try state.adapter.plain()
    #expect(plain.initial == nil && plain.modules.allSatisfy { $0.rank == 8 })
    #expect(zip(plain.modules, state.adapter.modules).allSatisfy { $0.scale == $1.scale })
    #expect(relative(logits(model, plain), trained) <= 1e-5)
    let folder = NSTemporaryDirectory() + "pissa-" + UUID().uuidString
    defer { try? FileManager.default.removeItem(atPath: folder) }
    try state.adapter.savePEFT(to: folder, baseModel: "tiny-tied")
    let loaded = try LoRAAdapter.loadPEFT(from: folder, model: model.config)
    #expect(loaded.config.r == 8 && loaded.config.loraAlpha == 16)
    #expect(relative(logits(model, loaded), trained) <= 1e-5)
  }

  @Test func settingsThatCannotWorkAreRefused() {
    var settings = TrainingSettings()
    settings.initWeights = "pissa_niter_0"
    #expect(throws: SettingsError.self) { try settings.validate() }
    settings.initWeights = "pissa"
    settings.initAdapter = "other"
    #expect(throws: SettingsError.self) { try settings.validate() }
    settings.initAdapter = nil
    settings.useDora = true
    #expect(throws: SettingsError.self) { try settings.validate() }
    settings.useDora = nil
    #expect(throws: Never.self) { try settings.validate() }
    // rank: auto grows adapters through resize, which neither variant survives.
    settings.rankLadder = [2, 4]
    #expect(throws: SettingsError.self) { try settings.validate() }
    settings.initWeights = nil
    settings.useDora = true
    #expect(throws: SettingsError.self) { try settings.validate() }
    settings.useDora = nil
    #expect(throws: Never.self) { try settings.validate() }
  }

  /// A PiSSA adapter as PEFT saves it unconverted is right only on PEFT's rewritten base: refused.
  @Test func unconvertedPEFTPiSSAFolderIsRefused() throws {
    let folder = NSTemporaryDirectory() + "peft-pissa-" + UUID().uuidString
    defer { try? FileManager.default.removeItem(atPath: folder) }
    try FileManager.default.copyItem(
      atPath: PEFTReferenceTests.fixtures.appendingPathComponent("peft-tiny").path, toPath: folder)
    let url = URL(fileURLWithPath: folder + "/adapter_config.json")
    var json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    json["init_lora_weights"] = "pissa_niter_4"
    try JSONSerialization.data(withJSONObject: json).write(to: url)
    let (model, _) = try LlamaModel.load(path: TrainerTests.tinyModel)
    #expect {
      _ = try LoRAAdapter.loadPEFT(from: folder, model: model.config)
    } throws: { "\($0)".contains("path_initial_model_for_weight_conversion") }
  }
}
