import Foundation
import LoRAFormats
import LoRAKernels
import LoRAModel
import Testing

@testable import LoRACheckpoint

/// The file format: filters, round trips in every precision, deltas, and every kind of bad
/// file the issue lists (truncated, bit-flipped, wrong magic, future version, empty, wrong
/// base, a delta without its base).
@Suite struct CheckpointFormatTests {
  static let tinyModel = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../LoRAModelTests/Fixtures/tiny-tied").standardized.path

  static func gaussian(_ count: Int, seed: UInt64, scale: Float = 0.02) -> Tensor {
    var random = SeededRandom(seed: seed)
    return Tensor(
      shape: [count],
      values: (0..<count).map { _ in
        let u1 = max(random.nextUnitFloat(), 1e-7)
        let u2 = random.nextUnitFloat()
        return scale * (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
      })
  }

  func temporaryFolder() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("sld-ckpt-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
  }

  /// An adapter on the tiny model and a header for it.
  func adapterAndHeader(kind: CheckpointHeader.Kind = .resumable) throws -> (LoRAAdapter, CheckpointHeader) {
    let (model, _) = try LlamaModel.load(path: Self.tinyModel)
    let adapter = try LoRAAdapter(config: LoRAConfig(r: 4, loraAlpha: 8), model: model.config, seed: 3)
    for m in adapter.modules { for i in 0..<m.b.count { m.b[i] = Float(i % 7) * 0.001 } }
    let header = CheckpointHeader(
      kind: kind, created: "2026-11-23T00:00:00Z", adapter: adapter.config,
      scaleConvention: adapter.scaleConvention, modules: adapter.checkpointModules,
      base: .init(fingerprint: "sha256:abc", source: "tiny", config: model.config),
      rng: .init(seed: 3))
    return (adapter, header)
  }

  @Test(arguments: [2, 4])
  func filtersRoundTrip(elementSize: Int) {
    for count in [0, 1, 7, 8, 9, 1001] {
      var random = SeededRandom(seed: UInt64(count))
      let raw = (0..<(count * elementSize)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
      let reference = (0..<raw.count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
      for chain in TensorFilter.candidates(delta: true) {
        let encoded = TensorFilter.encode(raw, chain: chain, elementSize: elementSize, reference: reference)
        #expect(
          encoded.count
            == TensorFilter.encodedSize(rawSize: raw.count, chain: chain, elementSize: elementSize))
        let decoded = TensorFilter.decode(
          encoded, chain: chain, elementSize: elementSize, rawSize: raw.count, reference: reference)
        #expect(decoded == raw, "chain \(chain), \(count) elements")
      }
    }
  }

  @Test func bitShuffleLayoutIsAsDocumented() {
    // Element 0 has only bit 0 of byte 0 set, element 9 only bit 3 of byte 1 (bit 11).
    var raw = [UInt8](repeating: 0, count: 16 * 4)
    raw[0] = 1
    raw[9 * 4 + 1] = 0b1000
    let planes = TensorFilter.bitShuffle(raw, elementSize: 4)
    let planeBytes = 2
    #expect(planes.count == 32 * planeBytes)
    #expect(planes[0] == 1)  // plane 0, element 0
    #expect(planes[(1 * 8 + 3) * planeBytes + 1] == 0b10)  // plane 11, element 9 = byte 1 bit 1
    #expect(planes.reduce(0) { $0 + $1.nonzeroBitCount } == 2)
  }

  @Test(arguments: [Tensor.ByteEncoding.f32, .bf16, .f16])
  func roundTripsInEachPrecision(precision: Tensor.ByteEncoding) throws {
    var (adapter, header) = try adapterAndHeader(kind: precision == .f32 ? .resumable : .weights)
    header.precision = precision
    let m = Self.gaussian(adapter.parameterCount, seed: 9, scale: 1e-3)
    var tensors = [CheckpointTensorSource(name: "lora", tensor: adapter.parameters, dtype: precision)]
    if precision == .f32 { tensors.append(CheckpointTensorSource(name: "adamw.exp_avg", tensor: m)) }
    let bytes = try CheckpointWriter.encode(header: header, tensors: tensors)
    let folder = try temporaryFolder()
    let url = folder.appendingPathComponent("a.sldckpt")
    try CheckpointWriter.writeAtomically(bytes, to: url)
    let reader = try CheckpointReader(path: url.path)
    #expect(reader.header == header)
    try reader.verify()
    let loaded = try LoRAAdapter.load(checkpoint: reader)
    let tolerance: Float = precision == .f32 ? 0 : (precision == .bf16 ? 1 / 128 : 1 / 1024)
    for i in 0..<adapter.parameterCount {
      let a = adapter.parameters[i]
      #expect(abs(loaded.parameters[i] - a) <= tolerance * abs(a) + 1e-7)
    }
    if precision == .f32 {
      #expect(loaded.parameters.values == adapter.parameters.values)
      let back = Tensor(zeros: [m.count])
      try reader.read("adamw.exp_avg", into: back)
      #expect(back.values == m.values)
    }
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["a.sldckpt"])
  }

  @Test func deltaAgainstAFullCheckpointIsLosslessAndSmaller() throws {
    let (adapter, header) = try adapterAndHeader()
    let folder = try temporaryFolder()
    let store = try CheckpointStore(folder: folder, keep: 10, fullEvery: 3)
    let v = Self.gaussian(adapter.parameterCount, seed: 5, scale: 1e-4)
    for i in 0..<v.count { v[i] = v[i] * v[i] }
    let full = try store.save(
      header: header, tensors: [("lora", adapter.parameters), ("adamw.exp_avg_sq", v)], step: 10)
    #expect(full.deltaOf == nil)
    // A small change, as between two checkpoints of a run.
    for i in 0..<adapter.parameterCount { adapter.parameters[i] += 1e-6 * Float(i % 5) }
    for i in 0..<v.count { v[i] *= 0.999 }
    let delta = try store.save(
      header: header, tensors: [("lora", adapter.parameters), ("adamw.exp_avg_sq", v)], step: 20)
    #expect(delta.deltaOf == CheckpointStore.fileName(step: 10))
    #expect(delta.fileBytes < full.fileBytes, "delta \(delta.fileBytes) vs full \(full.fileBytes)")
    let reader = try CheckpointReader(path: delta.path)
    #expect(reader.table.allSatisfy { $0.filters.contains(.xor) })
    #expect(try LoRAAdapter.load(checkpoint: reader).parameters.values == adapter.parameters.values)
    let back = Tensor(zeros: [v.count])
    try reader.read("adamw.exp_avg_sq", into: back)
    #expect(back.values == v.values)

    // The third save is a delta again, the fourth full (full-every 3).
    #expect(try store.save(header: header, tensors: [("lora", adapter.parameters)], step: 30).deltaOf != nil)
    #expect(try store.save(header: header, tensors: [("lora", adapter.parameters)], step: 40).deltaOf == nil)

    // Without its base, the delta is refused with the base's name.
    try FileManager.default.removeItem(at: folder.appendingPathComponent(CheckpointStore.fileName(step: 10)))
    #expect {
      try CheckpointReader(path: delta.path).verify()
    } throws: { error in
      guard case .missingDeltaBase(_, let base, _) = error as? CheckpointError else { return false }
      return base == CheckpointStore.fileName(step: 10)
    }
  }

  @Test func keepPolicyNeverDeletesABaseADeltaNeeds() throws {
    let (adapter, header) = try adapterAndHeader()
    let folder = try temporaryFolder()
    let store = try CheckpointStore(folder: folder, keep: 2, fullEvery: 4)
    for step in 1...6 {
      adapter.parameters[0] = Float(step)
      _ = try store.save(header: header, tensors: [("lora", adapter.parameters)], step: step)
    }
    // Fulls at 1 and 5; kept: 5 (full), 6 (delta of 5).
    #expect(CheckpointStore.list(folder).map(\.step) == [5, 6])
    let store2 = try CheckpointStore(folder: folder, keep: 1, fullEvery: 4)
    _ = try store2.save(header: header, tensors: [("lora", adapter.parameters)], step: 7)  // full: a new store
    #expect(CheckpointStore.list(folder).map(\.step) == [7])
    let store3 = try CheckpointStore(folder: folder, keep: 1, fullEvery: 2)
    _ = try store3.save(header: header, tensors: [("lora", adapter.parameters)], step: 8)  // full
    _ = try store3.save(header: header, tensors: [("lora", adapter.parameters)], step: 9)  // delta of 8
    #expect(CheckpointStore.list(folder).map(\.step) == [8, 9])
    for file in CheckpointStore.list(folder) { try CheckpointReader(path: file.url.path).verify() }
  }

  /// Writes one valid checkpoint and returns its bytes and a folder to damage copies in.
  func validFile() throws -> ([UInt8], URL) {
    let (adapter, header) = try adapterAndHeader()
    let bytes = try CheckpointWriter.encode(
      header: header, tensors: [CheckpointTensorSource(name: "lora", tensor: adapter.parameters)])
    return (bytes, try temporaryFolder())
  }

  func open(_ bytes: [UInt8], in folder: URL) throws -> CheckpointReader {
    let url = folder.appendingPathComponent("damaged-\(UUID().uuidString.prefix(6)).sldckpt")
    try Data(bytes).write(to: url)
    let reader = try CheckpointReader(path: url.path)
    try reader.verify()
    return reader
  }

  @Test func badFilesGetTheirOwnError() throws {
    let (good, folder) = try validFile()
    _ = try open(good, in: folder)

    func expectError(_ bytes: [UInt8], _ matches: (CheckpointError) -> Bool, _ comment: Comment) {
      #expect(comment) { try open(bytes, in: folder) } throws: { error in
        guard let error = error as? CheckpointError else { return false }
        return matches(error) && error.description.contains("damaged-")
      }
    }
    expectError([], { if case .notACheckpoint = $0 { true } else { false } }, "empty")
    expectError(
      Array("GGUF".utf8) + good.dropFirst(4), { if case .notACheckpoint = $0 { true } else { false } },
      "magic")
    var future = good
    future[8] = 2
    expectError(future, { if case .futureVersion(_, 2) = $0 { true } else { false } }, "future version")
    for cut in [good.count - 1, good.count / 2, 20] {
      expectError(
        Array(good.prefix(cut)), { if case .truncated = $0 { true } else { false } }, "truncated at \(cut)")
    }
    // A flipped bit in the header, in the tensor data, in the table: each is caught.
    let headerLength = Int(good[12]) | Int(good[13]) << 8
    let tableOffset = Int(CheckpointReader.integer(good, at: good.count - 56, as: UInt64.self))
    for position in [20, 16 + headerLength + 10, tableOffset + 5, good.count - 30] {
      var flipped = good
      flipped[position] ^= 0x10
      expectError(flipped, { if case .corrupt = $0 { true } else { false } }, "bit flip at \(position)")
    }
  }

  @Test func adapterOnTheWrongBaseIsRefusedUnlessForced() throws {
    let (adapter, header) = try adapterAndHeader()
    let folder = try temporaryFolder()
    let url = folder.appendingPathComponent("a.sldckpt")
    try CheckpointWriter.writeAtomically(
      try CheckpointWriter.encode(
        header: header, tensors: [CheckpointTensorSource(name: "lora", tensor: adapter.parameters)]), to: url)
    let reader = try CheckpointReader(path: url.path)
    #expect {
      try LoRAAdapter.checkBase(
        of: reader, fingerprint: "sha256:def", config: header.base.config, force: false)
    } throws: { error in
      let text = "\(error)"
      return text.contains("sha256:abc") && text.contains("sha256:def") && text.contains("--force")
    }
    try LoRAAdapter.checkBase(of: reader, fingerprint: "sha256:def", config: header.base.config, force: true)
    var other = header.base.config
    other.layers += 1
    #expect(throws: CheckpointError.self) {
      try LoRAAdapter.checkBase(of: reader, fingerprint: "sha256:abc", config: other, force: true)
    }
  }

  @Test func aFailedWriteLeavesEarlierCheckpointsIntact() throws {
    let (adapter, header) = try adapterAndHeader()
    let folder = try temporaryFolder()
    let store = try CheckpointStore(folder: folder, keep: 5, fullEvery: 1)
    let first = try store.save(header: header, tensors: [("lora", adapter.parameters)], step: 1)
    let before = try Data(contentsOf: URL(fileURLWithPath: first.path))
    // The next checkpoint's name is taken by a non-empty folder: the rename fails.
    let blocker = folder.appendingPathComponent(CheckpointStore.fileName(step: 2))
    try FileManager.default.createDirectory(
      at: blocker.appendingPathComponent("x"), withIntermediateDirectories: true)
    #expect {
      try store.save(header: header, tensors: [("lora", adapter.parameters)], step: 2)
    } throws: { error in
      guard case .writeFailed(let path, _) = error as? CheckpointError else { return false }
      return path.hasSuffix(CheckpointStore.fileName(step: 2))
    }
    #expect(try Data(contentsOf: URL(fileURLWithPath: first.path)) == before)
    let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
    #expect(names == [CheckpointStore.fileName(step: 1), CheckpointStore.fileName(step: 2)])  // no temporary left
  }

  @Test func newestValidSkipsADamagedNewestFile() throws {
    let (adapter, header) = try adapterAndHeader()
    let folder = try temporaryFolder()
    let store = try CheckpointStore(folder: folder, keep: 5, fullEvery: 1)
    _ = try store.save(header: header, tensors: [("lora", adapter.parameters)], step: 1)
    let second = try store.save(header: header, tensors: [("lora", adapter.parameters)], step: 2)
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: second.path)))
    bytes.removeLast(10)
    try Data(bytes).write(to: URL(fileURLWithPath: second.path))
    let (reader, skipped) = try CheckpointStore.newestValid(folder.path)
    #expect(reader.path.hasSuffix(CheckpointStore.fileName(step: 1)))
    #expect(skipped.count == 1 && skipped[0].reason.contains("truncated"))
    #expect(throws: CheckpointError.self) {
      try CheckpointStore.newestValid(folder.appendingPathComponent("none").path)
    }
  }

  @Test func fingerprintIdentifiesTheWeightsAndIsCached() throws {
    let folder = try temporaryFolder()
    let copy = folder.appendingPathComponent("model")
    try FileManager.default.copyItem(at: URL(fileURLWithPath: Self.tinyModel), to: copy)
    let files = try ModelFiles.open(copy.path)
    let (model, _) = try LlamaModel.load(files)
    let first = BaseFingerprint.of(model, files: files)
    #expect(first.hasPrefix("sha256:") && first.count == 7 + 64)
    #expect(FileManager.default.fileExists(atPath: copy.appendingPathComponent(".sld-fingerprint").path))
    #expect(BaseFingerprint.of(model, files: files) == first)
    #expect(BaseFingerprint.compute(model.weights) == first)
    let other = Self.tinyModel.replacingOccurrences(of: "tiny-tied", with: "tiny-untied")
    #expect(BaseFingerprint.compute(try LlamaModel.load(path: other).model.weights) != first)
  }
}
