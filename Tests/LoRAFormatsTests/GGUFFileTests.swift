import Foundation
import Testing

@testable import LoRAFormats

@Suite struct GGUFFileTests {
  func sample() -> GGUFBuilder {
    var b = GGUFBuilder()
    b.metadata = [
      ("general.architecture", .string("llama")), ("llama.block_count", .u32(2)),
      ("general.name", .string("tiny ✓")), ("tokenizer.ggml.tokens", .strings(["a", "b", "<|x|>"])),
      ("some.flag", .bool(true)), ("some.eps", .f32(1e-5)),
    ]
    b.addF32("w", dimensions: [3, 2], values: [1, 2, 3, 4, 5, 6])
    b.addF32("n", dimensions: [5], values: [0.5, -1, 2, 0, 7])
    return b
  }

  @Test(arguments: [2, 3])
  func readsMetadataAndTensors(version: Int) throws {
    let folder = try GGUFTestFolder()
    var builder = sample()
    builder.version = UInt32(version)
    let gguf = try GGUFFile(path: try folder.file("m.gguf", builder.build()))
    #expect(gguf.version == version)
    #expect(gguf.metadata["general.architecture"]?.string == "llama")
    #expect(gguf.metadata["llama.block_count"]?.int == 2)
    #expect(gguf.metadata["general.name"]?.string == "tiny ✓")
    #expect(gguf.metadata["tokenizer.ggml.tokens"]?.array?.compactMap(\.string) == ["a", "b", "<|x|>"])
    #expect(gguf.metadata["some.flag"]?.bool == true)
    #expect(gguf.metadata["some.eps"]?.double == Double(Float(1e-5)))
    #expect(gguf.metadataKeys.first == "general.architecture")
    let w = try gguf.tensor("w")
    #expect(w.shape == [2, 3])  // ggml dimensions [3, 2]: rows of 3
    #expect(w.values == [1, 2, 3, 4, 5, 6])
    #expect(try gguf.tensor("n").values == [0.5, -1, 2, 0, 7])
  }

  @Test func wrongMagicIsNamed() throws {
    let folder = try GGUFTestFolder()
    var bytes = sample().build()
    bytes[0...3] = [0x50, 0x4B, 0x03, 0x04]  // a zip file
    let path = try folder.file("m.gguf", bytes)
    #expect {
      try GGUFFile(path: path)
    } throws: { error in
      "\(error)" == "\(path): not a GGUF file: it starts with 'PK..', expected 'GGUF'"
    }
  }

  @Test func unknownVersionIsNamed() throws {
    let folder = try GGUFTestFolder()
    var builder = sample()
    builder.version = 7
    let path = try folder.file("m.gguf", builder.build())
    #expect(
      throws: FormatError.unsupported(
        file: path, message: "GGUF version 7; this reader supports versions 2 and 3")
    ) {
      try GGUFFile(path: path)
    }
  }

  @Test func everyTruncationIsAnError() throws {
    let folder = try GGUFTestFolder()
    let bytes = sample().build()
    // The last tensor's 20 bytes are followed by 12 bytes of alignment padding, which a
    // file may omit. Cut at every shorter length: header, metadata, table, data.
    let needed = bytes.count - 12
    for length in stride(from: 0, to: needed, by: 1) {
      let path = try folder.file("cut-\(length).gguf", Array(bytes.prefix(length)))
      #expect(throws: FormatError.self, "a file cut to \(length) of \(bytes.count) bytes was accepted") {
        _ = try GGUFFile(path: path)
      }
    }
  }

  @Test func tensorDataPastTheEndIsNamed() throws {
    let folder = try GGUFTestFolder()
    var builder = sample()
    builder.tensors[1].dimensions = [50]  // declares 200 bytes, the file holds 32
    let path = try folder.file("m.gguf", builder.build())
    #expect {
      try GGUFFile(path: path)
    } throws: { error in
      "\(error)".contains("truncated: the file ends inside the data of tensor 'n' (200 bytes")
    }
  }

  @Test func unsupportedTypeNamesTensorAndType() throws {
    let folder = try GGUFTestFolder()
    var builder = sample()
    builder.tensors[0].type = 11  // Q3_K
    builder.tensors[0].dimensions = [256, 1]
    builder.tensors[0].data = [UInt8](repeating: 0, count: 110)
    let gguf = try GGUFFile(path: try folder.file("m.gguf", builder.build()))
    #expect(gguf.info("w")?.typeName == "Q3_K (type 11)")
    #expect {
      try gguf.tensor("w")
    } throws: { error in
      "\(error)".hasSuffix(
        "unsupported: tensor 'w' has type Q3_K (type 11), which this reader cannot dequantize")
    }
  }

  @Test func missingFileIsNamed() {
    #expect(throws: FormatError.unreadable(file: "/nonexistent/x.gguf", reason: "No such file or directory"))
    {
      try GGUFFile(path: "/nonexistent/x.gguf")
    }
  }
}
