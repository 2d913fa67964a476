import Foundation
import LoRAKernels
import Testing

@testable import LoRAFormats

/// GGUFWriter round trips through our GGUFFile reader: every metadata type, arrays, F32/F16/
/// BF16 tensors with their shapes, alignment, and the atomic write.
@Suite struct GGUFWriterTests {
  static let everyType: [(String, GGUFValue)] = [
    ("t.u8", .uint8(200)), ("t.i8", .int8(-100)), ("t.u16", .uint16(60000)), ("t.i16", .int16(-30000)),
    ("t.u32", .uint32(4_000_000_000)), ("t.i32", .int32(-2_000_000_000)),
    ("t.u64", .uint64(1 << 60)), ("t.i64", .int64(-(1 << 60))), ("t.f32", .float32(0.15625)),
    ("t.f64", .float64(-1e300)), ("t.bool", .bool(true)), ("t.false", .bool(false)),
    ("t.string", .string("héllo ✓")), ("t.empty", .string("")),
    ("t.strings", .array([.string("a"), .string(""), .string("ĠParis")])),
    ("t.ints", .array([.int32(1), .int32(-2), .int32(3)])),
    ("t.floats", .array([.float32(1.5), .float32(-0.25)])),
    ("t.nested", .array([.array([.uint8(1), .uint8(2)]), .array([.uint8(3)])])),
    ("t.none", .array([])),
  ]

  @Test func metadataOfEveryTypeRoundTrips() throws {
    let folder = try GGUFTestFolder()
    var writer = GGUFWriter()
    for (key, value) in Self.everyType { writer.set(key, value) }
    writer.set("t.u8", .uint8(201))  // replaced in place
    let path = folder.path + "/meta.gguf"
    try writer.write(to: path)
    let file = try GGUFFile(path: path)
    #expect(file.version == 3)
    #expect(file.metadataKeys == ["general.alignment"] + Self.everyType.map(\.0))
    #expect(file.metadata["general.alignment"] == .uint32(32))
    for (key, value) in Self.everyType where key != "t.u8" {
      #expect(file.metadata[key] == value, "\(key)")
    }
    #expect(file.metadata["t.u8"] == .uint8(201))
    #expect(file.tensors.isEmpty)
  }

  @Test func tensorsRoundTripWithShapesAndAlignedOffsets() throws {
    let folder = try GGUFTestFolder()
    // A linear weight [OUT 3, IN 5], a vector of 7 (odd sizes force padding) and a 3-D tensor.
    let weight = Tensor(shape: [3, 5], values: (0..<15).map { Float($0) * 0.5 - 3 })
    let vector = Tensor(shape: [7], values: (0..<7).map { 1 / Float($0 + 1) })
    let cube = Tensor(shape: [2, 3, 4], values: (0..<24).map { Float($0) - 12.25 })
    var writer = GGUFWriter()
    writer.set("general.architecture", .string("llama"))
    writer.addTensor("w", weight)
    writer.addTensor("v", vector, type: .f32)
    writer.addTensor("half", shape: [3, 5], type: .f16) { weight }
    writer.addTensor("brain", cube, type: .bf16)
    let path = folder.path + "/tensors.gguf"
    try writer.write(to: path)

    let file = try GGUFFile(path: path)
    #expect(file.tensors.map(\.name) == ["w", "v", "half", "brain"])
    #expect(file.info("w")?.shape == [3, 5] && file.info("w")?.dimensions == [5, 3])
    #expect(file.info("brain")?.dimensions == [4, 3, 2])
    #expect(file.info("half")?.type == .f16 && file.info("brain")?.type == .bf16)
    #expect(file.dataOffset % 32 == 0)
    #expect(file.tensors.allSatisfy { $0.offset % 32 == 0 })
    #expect(try file.tensor("w").values == weight.values)
    #expect(try file.tensor("w").shape == [3, 5])
    #expect(try file.tensor("v").values == vector.values)
    // Every value here is exact in F16; BF16 keeps 8 bits of mantissa (12.25 → 12.25, 0.25 steps ok).
    #expect(try file.tensor("half").values == weight.values)
    #expect(try file.tensor("brain").values == cube.values)
  }

  @Test func f16AndBF16RoundToNearest() throws {
    let folder = try GGUFTestFolder()
    let values: [Float] = [1 / 3, -2.71828, 65504, 1e-3, 0]
    var writer = GGUFWriter()
    writer.addTensor("h", Tensor(shape: [5], values: values), type: .f16)
    writer.addTensor("b", Tensor(shape: [5], values: values), type: .bf16)
    let path = folder.path + "/round.gguf"
    try writer.write(to: path)
    let file = try GGUFFile(path: path)
    let half = try file.tensor("h").values
    let brain = try file.tensor("b").values
    for (i, v) in values.enumerated() {
      #expect(half[i] == Float(Float16(v)))
      #expect(abs(brain[i] - v) <= abs(v) * 0.004)
    }
    #expect(brain[0] != values[0])  // 1/3 is not exact in BF16: it was rounded, not copied
  }

  @Test func existingFileIsKeptUnlessOverwrite() throws {
    let folder = try GGUFTestFolder()
    let path = try folder.file("model.gguf", Array("old".utf8))
    var writer = GGUFWriter()
    writer.set("k", .string("new"))
    #expect(throws: FormatError.self) { try writer.write(to: path) }
    #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data("old".utf8))
    try writer.write(to: path, overwrite: true)
    #expect(try GGUFFile(path: path).metadata["k"] == .string("new"))
    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["model.gguf"])
  }

  @Test func failuresLeaveNothingBehind() throws {
    let folder = try GGUFTestFolder()
    let path = folder.path + "/bad.gguf"
    struct Boom: Error {}

    // A tensor whose data fails mid-file: the temporary file is removed.
    var failing = GGUFWriter()
    failing.addTensor("ok", Tensor(shape: [4], values: [1, 2, 3, 4]))
    failing.addTensor("fails", shape: [4]) { throw Boom() }
    #expect(throws: Boom.self) { try failing.write(to: path) }

    // A tensor whose data has the wrong size.
    var wrongSize = GGUFWriter()
    wrongSize.addTensor("t", shape: [2, 2]) { Tensor(zeros: [3]) }
    #expect(throws: FormatError.self) { try wrongSize.write(to: path) }

    // Types and shapes checked before writing.
    var quantized = GGUFWriter()
    quantized.addTensor("q", Tensor(zeros: [32]), type: .q8_0)
    #expect(throws: FormatError.self) { try quantized.write(to: path) }
    var duplicate = GGUFWriter()
    duplicate.addTensor("d", Tensor(zeros: [1]))
    duplicate.addTensor("d", Tensor(zeros: [1]))
    #expect(throws: FormatError.self) { try duplicate.write(to: path) }
    var mixed = GGUFWriter()
    mixed.set("m", .array([.int32(1), .string("x")]))
    #expect(throws: FormatError.self) { try mixed.write(to: path) }

    #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).isEmpty)

    // A missing folder is named.
    do {
      try GGUFWriter().write(to: folder.path + "/missing/x.gguf")
      Issue.record("writing into a missing folder succeeded")
    } catch let error as FormatError {
      #expect(error.description.contains("does not exist"))
    }
  }
}
