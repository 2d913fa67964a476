import Foundation
import LoRATraining
import LoRAYAML

/// One entry of `adapters:` as written, before defaults and sweeps are applied.
struct AdapterEntry {
  var field: YAMLField
  var name: String
  var nameOrigin: Origin
  var settings: AdapterSettings
  var origins: [String: Origin]
  var placement: Placement
  var explicitPlacement: Bool
  var group: String?
  var ranks: Int?
  var priority: Int
  /// Swept keys and their values, in file order.
  var sweep: [(key: String, values: [YAMLField])] = []
  var sweepOrigin: Origin?
  var halving: SuccessiveHalving?
  var halvingOrigin: Origin?
  /// The adapter this one is built on (`parent:`), and where it is named.
  var parent: (name: String, origin: Origin)?

  static let namePattern = try! NSRegularExpression(pattern: "^[A-Za-z0-9_.-]+$")

  static func checkName(_ name: String, _ field: YAMLField, what: String) throws {
    if Self.namePattern.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)) == nil {
      throw field.error(.invalidValue, "\(what) '\(name)' may use only letters, digits, '_', '.' and '-'")
    }
  }

  init(field: YAMLField, defaults: AdapterSettings, defaultOrigins: [String: Origin], jobPlacement: Placement)
    throws
  {
    self.field = field
    let entries = try field.entries()
    try YAMLField.checkKeys(entries, allowed: JobFile.adapterKeys, what: "adapter keys")
    let values = Dictionary(uniqueKeysWithValues: entries.map { ($0.key, $0.field) })
    guard let nameField = values["name"] else {
      throw field.error(.missingKey, "'name' is required")
    }
    name = try nameField.string()
    try Self.checkName(name, nameField, what: "name")
    nameOrigin = nameField.origin

    let own = try field.adapterSettings()
    var origins = defaultOrigins
    for (key, value) in entries where AdapterSettings.keys.contains(key) { origins[key] = value.origin }
    if own.batchSize != nil && own.tokensPerBatch != nil {
      throw values["tokens_per_batch"]!.keyError(
        .conflict, "give batch_size or tokens_per_batch, not both")
    }
    settings = defaults.overridden(by: own)
    if own.batchSize != nil { origins["tokens_per_batch"] = nil }
    if own.tokensPerBatch != nil { origins["batch_size"] = nil }
    if settings.rank == nil && !settings.training.$rank { origins["rank"] = nil }
    if settings.rankLadder == nil { origins["rank_ladder"] = nil }
    self.origins = origins
    if settings.data == nil {
      throw field.error(.missingKey, "'data' is required (in the adapter or in defaults)")
    }

    explicitPlacement = values["placement"] != nil
    placement = try values["placement"].map(JobFile.placement) ?? jobPlacement
    if let g = values["group"] {
      let name = try g.string()
      try Self.checkName(name, g, what: "group")
      self.origins["group"] = g.origin
      group = name
      if explicitPlacement && (placement == .shared || placement == .separate) {
        throw values["placement"]!.error(
          .conflict,
          "placement \(placement.rawValue) contradicts group '\(name)': grouped adapters train fused")
      }
      placement = .fused
    }
    if let r = values["ranks"] {
      let n = try r.int()
      if n < 1 { throw r.error(.invalidValue, "must be at least 1, got \(n)") }
      ranks = n
      self.origins["ranks"] = r.origin
    }
    priority = try values["priority"].map { try $0.int() } ?? 0
    if let p = values["parent"] {
      let parentName = try p.string()
      try Self.checkName(parentName, p, what: "parent")
      parent = (parentName, p.origin)
    }

    if let s = values["sweep"] { try readSweep(s, own: own) }
    if let h = values["successive_halving"] { try readHalving(h, values: values) }
  }

  /// `sweep:`: each key's list of values, checked one by one as the key's setting.
  mutating func readSweep(_ s: YAMLField, own: AdapterSettings) throws {
    sweepOrigin = s.origin
    let sweepEntries = try s.entries()
    guard !sweepEntries.isEmpty else {
      throw s.error(.invalidValue, "an empty sweep; name keys and their values")
    }
    for (key, list) in sweepEntries {
      guard AdapterSettings.keys.contains(key) else {
        throw list.keyError(
          .unknownKey,
          "unknown key; the sweepable keys are \(AdapterSettings.sweepableKeys.joined(separator: ", "))")
      }
      guard AdapterSettings.sweepableKeys.contains(key) else {
        throw list.keyError(
          .invalidValue,
          "\(key) cannot be swept; the sweepable keys are \(AdapterSettings.sweepableKeys.joined(separator: ", "))"
        )
      }
      let elements = try list.list()
      guard !elements.isEmpty else {
        throw list.error(.invalidValue, "an empty list; give at least one value")
      }
      for element in elements { _ = try YAMLField.adapterSettings([(key, element)]) }
      if own.valueIsSet(key) {
        throw list.keyError(.conflict, "\(key) is both set and swept in this adapter")
      }
      sweep.append((key, elements))
    }
  }

  /// `successive_halving:`: its rungs and the fraction kept, which need a fused sweep with
  /// validation data.
  mutating func readHalving(_ h: YAMLField, values: [String: YAMLField]) throws {
    halvingOrigin = h.origin
    guard values["sweep"] != nil else {
      throw h.keyError(.conflict, "successive_halving needs a sweep whose members it compares")
    }
    let hEntries = try h.entries()
    try YAMLField.checkKeys(hEntries, allowed: ["rungs", "keep"], what: "successive_halving keys")
    let keys = Dictionary(uniqueKeysWithValues: hEntries.map { ($0.key, $0.field) })
    guard let rungsField = keys["rungs"] else {
      throw h.error(.missingKey, "'rungs' is required: the updates after which members are compared")
    }
    let rungElements = try rungsField.list()
    guard !rungElements.isEmpty else { throw rungsField.error(.invalidValue, "give at least one rung") }
    var rungs: [Int] = []
    for element in rungElements {
      let rung = try element.int()
      if rung < 1 { throw element.error(.invalidValue, "a rung must be at least 1, got \(rung)") }
      if let last = rungs.last, rung <= last {
        throw element.error(.invalidValue, "rungs must increase: \(rung) follows \(last)")
      }
      rungs.append(rung)
    }
    var keep = 0.5
    if let k = keys["keep"] {
      keep = try k.double()
      if !(keep > 0 && keep < 1) { throw k.error(.invalidValue, "must be in (0, 1), got \(keep)") }
    }
    halving = SuccessiveHalving(rungs: rungs, keep: keep)
    if settings.validationData == nil && (settings.validationFraction ?? 0) == 0 {
      throw h.keyError(
        .conflict,
        "successive_halving compares validation losses; set validation_data or validation_fraction")
    }
    if explicitPlacement && placement != .fused && placement != .auto {
      throw values["placement"]!.error(
        .conflict, "successive_halving needs the sweep fused; placement is \(placement.rawValue)")
    }
  }
}
