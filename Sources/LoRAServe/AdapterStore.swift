import Foundation
import LoRACheckpoint
import LoRAFormats
import LoRAModel

/// Many adapters of one frozen base in one process.
///
/// Each adapter is checked against the base when loaded (its checkpoint's base fingerprint,
/// and always its shapes), then kept in RAM under a byte budget: when the resident adapters
/// exceed it, the least recently used ones that are not pinned are dropped, and read again
/// from their path the next time a request names them. Requests hold the `LoRAAdapter`
/// object itself, so unloading or evicting an adapter never changes a running generation:
/// its memory is freed when the last request using it finishes.
///
/// Thread-safe: every method takes one lock; loading from disk happens outside it.
public final class AdapterStore: @unchecked Sendable {
  public let model: LlamaModel
  let files: ModelFiles
  /// The name requests use for the base alone.
  public let baseName: String
  /// The served base's fingerprint (computed or read from its cache at start).
  public let baseFingerprint: String
  /// Most bytes of resident adapters; nil: no limit.
  public let budgetBytes: Int?

  struct Entry {
    var info: AdapterInfo
    var adapter: LoRAAdapter?
    var signature: RouteSignature?
    var lastUsed: UInt64
  }

  private let lock = NSLock()
  private var entries: [String: Entry] = [:]
  private var order: [String] = []
  private var clock: UInt64 = 0
  private var counters = StoreStats(hits: 0, misses: 0, evictions: 0, residentBytes: 0, budgetBytes: nil)

  public init(model: LlamaModel, files: ModelFiles, baseName: String, budgetBytes: Int? = nil) {
    self.model = model
    self.files = files
    self.baseName = baseName
    self.budgetBytes = budgetBytes
    baseFingerprint = BaseFingerprint.of(model, files: files)
    counters.budgetBytes = budgetBytes
  }

  /// Reads the adapter at `path` (anything `--adapter` takes), checks it against the base and
  /// keeps it under `name`. On any error the store is left as it was.
  @discardableResult
  public func load(name: String, path: String, pin: Bool = false) throws(ServeError) -> AdapterInfo {
    guard AdapterStore.isValidName(name), name != baseName, name != "auto" else {
      throw .invalidName(name)
    }
    if contains(name) { throw .duplicateName(name) }
    let (adapter, info) = try read(name: name, path: path, pin: pin)
    // A signature made on another base says nothing about this one.
    let signature = RouteSignature.load(near: path).flatMap {
      $0.baseFingerprint == baseFingerprint ? $0 : nil
    }
    return try withLock { () throws(ServeError) -> AdapterInfo in
      guard entries[name] == nil else { throw .duplicateName(name) }
      clock += 1
      var info = info
      info.routable = signature != nil
      entries[name] = Entry(info: info, adapter: adapter, signature: signature, lastUsed: clock)
      order.append(name)
      counters.residentBytes += info.bytes
      evictIfNeeded(keeping: name)
      return entries[name]?.info ?? info
    }
  }

  /// Forgets `name`. Requests already using it finish with it.
  public func unload(name: String) throws(ServeError) {
    try withLock { () throws(ServeError) in
      guard let entry = entries.removeValue(forKey: name) else {
        throw .unknownModel(name: name, available: order)
      }
      order.removeAll { $0 == name }
      if entry.adapter != nil { counters.residentBytes -= entry.info.bytes }
    }
  }

  /// The adapter named `name`, read from disk again if it was evicted (a miss).
  public func acquire(_ name: String) throws(ServeError) -> LoRAAdapter {
    enum Lookup {
      case resident(LoRAAdapter)
      case onDisk(String)
    }
    let lookup = try withLock { () throws(ServeError) -> Lookup in
      guard var entry = entries[name] else { throw .unknownModel(name: name, available: order) }
      clock += 1
      entry.lastUsed = clock
      entries[name] = entry
      guard let adapter = entry.adapter else { return .onDisk(entry.info.path) }
      counters.hits += 1
      return .resident(adapter)
    }
    let path: String
    switch lookup {
    case .resident(let adapter): return adapter
    case .onDisk(let p): path = p
    }
    let (adapter, _) = try read(name: name, path: path, pin: false)
    return withLock {
      counters.misses += 1
      // Unloaded meanwhile: this request is served anyway. Read by another thread first: use that copy.
      guard var entry = entries[name] else { return adapter }
      if let resident = entry.adapter { return resident }
      entry.adapter = adapter
      entry.info.resident = true
      entries[name] = entry
      counters.residentBytes += entry.info.bytes
      evictIfNeeded(keeping: name)
      return adapter
    }
  }

  /// Every adapter, in load order.
  public func list() -> [AdapterInfo] { withLock { order.compactMap { entries[$0]?.info } } }

  /// Names of the loaded adapters, in load order.
  public func available() -> [String] { withLock { order } }

  public func contains(_ name: String) -> Bool { withLock { entries[name] != nil } }

  /// Context positions a request to `name` loses to virtual tokens: its own, or for "auto"
  /// the most any adapter takes (the router may choose it); 0 for the base.
  public func virtualPositions(_ name: String) -> Int {
    withLock {
      name == "auto"
        ? entries.values.compactMap(\.info.virtualTokens).max() ?? 0 : entries[name]?.info.virtualTokens ?? 0
    }
  }

  public func stats() -> StoreStats { withLock { counters } }

  /// Route signatures of the adapters that have one, by name.
  public func signatures() -> [(name: String, signature: RouteSignature)] {
    withLock { order.compactMap { name in entries[name]?.signature.map { (name, $0) } } }
  }

  /// Letters, digits, '.', '_', '-', '/', ':'; 1 to 128 characters.
  public static func isValidName(_ name: String) -> Bool {
    !name.isEmpty && name.count <= 128
      && name.unicodeScalars.allSatisfy { s in
        (s.isASCII && (CharacterSet.alphanumerics.contains(s))) || "._-/:".unicodeScalars.contains(s)
      }
  }

  /// Drops least recently used, unpinned adapters until the resident ones fit the budget;
  /// `keeping` (just loaded or acquired) stays. Call with the lock held.
  private func evictIfNeeded(keeping: String) {
    guard let budget = budgetBytes else { return }
    while counters.residentBytes > budget {
      let victim = entries.filter { $0.key != keeping && $0.value.adapter != nil && !$0.value.info.pinned }
        .min { $0.value.lastUsed < $1.value.lastUsed }
      guard let (name, entry) = victim else { return }
      entries[name]?.adapter = nil
      entries[name]?.info.resident = false
      counters.residentBytes -= entry.info.bytes
      counters.evictions += 1
    }
  }

  /// Loads and checks the adapter at `path` (no lock held).
  private func read(name: String, path: String, pin: Bool) throws(ServeError) -> (LoRAAdapter, AdapterInfo) {
    guard let kind = AdapterFile.kind(of: path) else {
      throw .invalidAdapter(
        path: path,
        reason:
          "is not an adapter: expected a training output folder, a .sldckpt checkpoint, a PEFT folder "
          + "(adapter_config.json) or a GGUF LoRA file")
    }
    var adapterBase: String?
    if kind == .checkpoint {
      do {
        let (reader, _) = try CheckpointStore.newestValid(path)
        adapterBase = reader.header.base.fingerprint
      } catch {
        throw .invalidAdapter(path: path, reason: "\(error)")
      }
      if let adapterBase, adapterBase != baseFingerprint {
        throw .wrongBase(name: name, adapterBase: adapterBase, servedBase: baseFingerprint)
      }
    }
    let adapter: LoRAAdapter
    do {
      adapter = try AdapterFile.load(path, model: model, files: files).adapter
    } catch let error as CheckpointError {
      if case .mismatch(_, let reason) = error { throw .incompatible(name: name, reason: reason) }
      throw .invalidAdapter(path: path, reason: "\(error)")
    } catch {
      // PEFT and GGUF LoRA loaders check every tensor's shape against the base.
      let text = "\(error)"
      if text.contains("shape") || text.contains("layer") || text.contains("expected") {
        throw .incompatible(name: name, reason: text)
      }
      throw .invalidAdapter(path: path, reason: text)
    }
    let targets = Array(Set(adapter.modules.map { $0.target.rawValue })).sorted()
    let info = AdapterInfo(
      name: name, path: path, kind: kind.rawValue, baseFingerprint: adapterBase, parent: baseName,
      targets: targets, rank: adapter.modules.map(\.rank).max() ?? 0, parameters: adapter.parameterCount,
      bytes: adapter.parameterCount * MemoryLayout<Float>.size, resident: true, pinned: pin, routable: false,
      virtualTokens: adapter.virtualPositions > 0 ? adapter.virtualPositions : nil)
    return (adapter, info)
  }

  private func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
    lock.lock()
    defer { lock.unlock() }
    return try body()
  }
}
