import Foundation
import LoRACheckpoint
import LoRAModel
import Testing

@testable import LoRAServe

/// Loading, checking, caching under a byte budget, pinning and unloading.
@Suite struct AdapterStoreTests {
  @Test func loadsEveryFormatAndAcquiresTheSameNumbers() throws {
    let f = try ServeFixture()
    let a = try f.adapter(ServeFixture.configs[0], seed: 1)
    let b = try f.adapter(ServeFixture.configs[1], seed: 2)
    let store = f.store()
    let info = try store.load(name: "a", path: f.checkpoint(a, "a"))
    try store.load(name: "b", path: f.peft(b, "b-peft"))
    #expect(info.kind == "checkpoint" && info.baseFingerprint == f.fingerprint && info.parent == "tiny")
    #expect(info.bytes == a.parameterCount * 4 && info.resident)
    #expect(try store.acquire("a").parameters.values == a.parameters.values)
    #expect(try store.acquire("b").parameters.values == b.parameters.values)
    #expect(store.available() == ["a", "b"])
    #expect(store.stats().hits == 2 && store.stats().misses == 0)
  }

  @Test func evictsTheLeastRecentlyUsedUnpinnedAdapterAndReloadsIt() throws {
    let f = try ServeFixture()
    let adapters = try (0..<3).map { try f.adapter(ServeFixture.configs[1], seed: UInt64($0)) }
    let bytes = adapters[0].parameterCount * 4
    // Room for two.
    let store = f.store(budgetBytes: 2 * bytes + 1)
    try store.load(name: "p", path: f.checkpoint(adapters[0], "p"), pin: true)
    try store.load(name: "x", path: f.checkpoint(adapters[1], "x"))
    #expect(store.stats().evictions == 0)
    try store.load(name: "y", path: f.checkpoint(adapters[2], "y"))
    // "p" is pinned, so "x" (least recently used of the rest) goes.
    let resident = Dictionary(uniqueKeysWithValues: store.list().map { ($0.name, $0.resident) })
    #expect(resident == ["p": true, "x": false, "y": true])
    #expect(store.stats().evictions == 1 && store.stats().residentBytes == 2 * bytes)
    // Acquiring "x" reads it again (a miss) and evicts "y".
    #expect(try store.acquire("x").parameters.values == adapters[1].parameters.values)
    #expect(store.stats().misses == 1 && store.stats().evictions == 2)
    #expect(store.list().first { $0.name == "y" }?.resident == false)
  }

  @Test func refusesBadLoadsAndLeavesTheStoreAsItWas() throws {
    let f = try ServeFixture()
    let a = try f.adapter(ServeFixture.configs[0], seed: 1)
    let store = f.store()
    try store.load(name: "a", path: f.checkpoint(a, "a"))
    let before = store.list()

    // Another base's checkpoint: both fingerprints, nothing loaded.
    let other = "sha256:" + String(repeating: "ab", count: 32)
    let foreign = try f.checkpoint(a, "foreign", fingerprint: other)
    #expect(throws: ServeError.wrongBase(name: "f", adapterBase: other, servedBase: f.fingerprint)) {
      try store.load(name: "f", path: foreign)
    }
    // Shapes of another model.
    let (big, _) = try LlamaModel.load(path: Fixtures.path("tiny-tied"))
    if big.config.hiddenSize != f.model.config.hiddenSize || big.config.layers != f.model.config.layers {
      let misfit = try LoRAAdapter(config: ServeFixture.configs[1], model: big.config, seed: 3)
      let path = try f.peft(misfit, "misfit")
      #expect(
        performing: { try store.load(name: "m", path: path) },
        throws: { error in
          if case ServeError.incompatible(let name, _) = error { return name == "m" }
          return false
        })
    }
    #expect(throws: ServeError.duplicateName("a")) { try store.load(name: "a", path: f.checkpoint(a, "a2")) }
    #expect(throws: ServeError.invalidName("auto")) { try store.load(name: "auto", path: "x") }
    #expect(throws: ServeError.invalidName("tiny")) { try store.load(name: "tiny", path: "x") }
    #expect(throws: ServeError.invalidName("a b")) { try store.load(name: "a b", path: "x") }
    #expect(
      performing: { try store.load(name: "n", path: f.folder.path + "/nothing") },
      throws: { error in
        if case ServeError.invalidAdapter(let path, _) = error { return path.hasSuffix("/nothing") }
        return false
      })
    #expect(store.list() == before)
    #expect(throws: ServeError.unknownModel(name: "zz", available: ["a"])) { try store.unload(name: "zz") }
  }

  @Test func unloadingKeepsTheAdapterOfRequestsThatHoldIt() throws {
    let f = try ServeFixture()
    let a = try f.adapter(ServeFixture.configs[0], seed: 1)
    let store = f.store()
    try store.load(name: "a", path: f.checkpoint(a, "a"))
    let held = try store.acquire("a")
    try store.unload(name: "a")
    #expect(store.available().isEmpty && store.stats().residentBytes == 0)
    #expect(held.parameters.values == a.parameters.values)
    #expect(throws: ServeError.unknownModel(name: "a", available: [])) { try store.acquire("a") }
  }
}
