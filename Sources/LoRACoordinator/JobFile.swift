import Foundation
import LoRATraining
import LoRAYAML

/// A job file: one base model and many adapters to train on it (docs/job-file.md).
///
/// ```yaml
/// model: ~/.cache/swift-lora-dist/SmolLM2-135M-Instruct.Q4_1.gguf
/// output: out/demo
/// defaults: { steps: 60, rank: 8 }
/// adapters:
///   - { name: devil, data: data/devil/train.jsonl, group: g1 }
///   - { name: arith, data: data/arith/train.jsonl, sweep: { rank: [2, 8], lr: [1.0e-4, 3.0e-4] } }
/// ```
///
/// ``load(path:)`` reads and checks everything that needs no file system beyond the job file
/// (keys, types, values, names, sweeps, groups, outputs); ``validate(ranks:)`` then checks the
/// model and data files exist and that the adapters' rank groups fit on the ranks. Every
/// error is a ``JobFileError`` naming the file, line and key path.
public struct JobFile: Sendable {
  /// The top-level keys.
  public static let keys = ["model", "output", "placement", "defaults", "adapters"]
  /// Keys an adapter entry has besides the training settings.
  public static let adapterOnlyKeys = [
    "name", "placement", "group", "ranks", "priority", "sweep", "successive_halving",
  ]
  /// Every key an adapter entry may have.
  public static var adapterKeys: [String] { adapterOnlyKeys + AdapterSettings.keys }
  /// Keys `defaults` may have: the training settings except `output`.
  public static var defaultsKeys: [String] { AdapterSettings.keys.filter { $0 != "output" } }

  /// The job file as named.
  public var path: String
  /// The absolute folder relative paths are resolved against: the job file's folder.
  public var folder: String
  /// The base model (absolute; `~` expanded).
  public var model: String
  /// The parent output folder (absolute), if given.
  public var output: String?
  /// The default placement of the adapters.
  public var placement: Placement
  /// The `defaults` settings as written (paths not resolved).
  public var defaults: AdapterSettings
  /// The adapters, resolved and expanded, in file order.
  public var adapters: [AdapterJob]

  /// Reads and checks a job file.
  public static func load(path: String) throws -> JobFile {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
      throw JobFileError(.unreadable, file: path, line: nil, keyPath: nil, "cannot read the job file")
    }
    let url = URL(fileURLWithPath: path).standardizedFileURL
    return try parse(text, path: path, folder: url.deletingLastPathComponent().path)
  }

  /// Parses job-file text; `path` names it in errors, `folder` resolves relative paths.
  public static func parse(_ text: String, path: String, folder: String) throws -> JobFile {
    guard let root = try YAMLField.document(text, path: path) else {
      throw JobFileError(.missingKey, file: path, line: nil, keyPath: "model", "the job file is empty")
    }
    guard root.node.mapping != nil else {
      throw root.error(.wrongType, "expected a mapping with model, adapters and the other job keys")
    }
    let entries = try root.entries()
    try YAMLField.checkKeys(entries, allowed: keys, what: "top-level keys")
    let top = Dictionary(uniqueKeysWithValues: entries.map { ($0.key, $0.field) })
    let resolver = PathResolver(folder: folder)

    guard let modelField = top["model"] else {
      throw root.error(.missingKey, "'model' is required: a GGUF file or Hugging Face folder")
    }
    let model = resolver.resolve(try modelField.string())
    let output = try top["output"].map { resolver.resolve(try $0.string()) }
    let placement = try top["placement"].map(Self.placement) ?? .auto

    var defaults = AdapterSettings()
    var defaultOrigins: [String: Origin] = [:]
    if let field = top["defaults"] {
      let entries = try field.entries()
      try YAMLField.checkKeys(entries, allowed: defaultsKeys, what: "defaults keys")
      defaults = try field.adapterSettings()
      for (key, value) in entries { defaultOrigins[key] = value.origin }
    }

    guard let adaptersField = top["adapters"] else {
      throw root.error(.missingKey, "'adapters' is required: a list of adapters to train")
    }
    let entryFields = try adaptersField.list()
    guard !entryFields.isEmpty else {
      throw adaptersField.error(.invalidValue, "no adapters; add at least one")
    }

    var adapters: [AdapterJob] = []
    for field in entryFields {
      let parsed = try AdapterEntry(
        field: field, defaults: defaults, defaultOrigins: defaultOrigins, jobPlacement: placement)
      for var job in try parsed.expand(
        resolver: resolver, jobOutput: output, outputOrigin: top["output"]?.origin)
      {
        job.order = adapters.count
        adapters.append(job)
      }
    }
    let job = JobFile(
      path: path, folder: folder, model: model, output: output, placement: placement, defaults: defaults,
      adapters: adapters)
    try job.checkNamesOutputsAndGroups()
    return job
  }

  static func placement(_ field: YAMLField) throws -> Placement {
    let text = try field.string()
    guard let value = Placement(rawValue: text) else {
      throw field.error(
        .invalidValue,
        "unknown placement '\(text)'; expected " + Placement.allCases.map(\.rawValue).joined(separator: ", "))
    }
    return value
  }

  /// Unique names, distinct output folders, and one `ranks` per fused group.
  func checkNamesOutputsAndGroups() throws {
    var names: [String: AdapterJob] = [:]
    for adapter in adapters {
      if let first = names[adapter.name] {
        throw adapter.origin(of: "name").error(
          .duplicateName,
          "adapter name '\(adapter.name)' is used twice (first at \(first.origin.keyPath)"
            + (first.origin.line.map { ", line \($0)" } ?? "") + ")")
      }
      names[adapter.name] = adapter
    }
    for (i, a) in adapters.enumerated() {
      for b in adapters[..<i] {
        let x = a.output
        let y = b.output
        if x == y || x.hasPrefix(y + "/") || y.hasPrefix(x + "/") {
          throw a.origin(of: "output").error(
            .sharedOutput,
            x == y
              ? "adapters '\(b.name)' and '\(a.name)' would both write to \(x); give each its own output"
              : "the output folders of '\(b.name)' (\(y)) and '\(a.name)' (\(x)) lie one inside the other")
        }
      }
    }
    var groupRanks: [String: AdapterJob] = [:]
    for adapter in adapters {
      guard let group = adapter.group, let ranks = adapter.ranks else { continue }
      if let other = groupRanks[group], other.ranks != ranks {
        throw adapter.origin(of: "ranks").error(
          .conflict,
          "group '\(group)' is given \(other.ranks!) ranks by '\(other.name)' and \(ranks) by '\(adapter.name)'"
        )
      }
      groupRanks[group] = adapter
    }
  }

  /// The fused groups and their adapters, in order of first appearance.
  public var groups: [(name: String, adapters: [AdapterJob])] {
    var order: [String] = []
    var members: [String: [AdapterJob]] = [:]
    for adapter in adapters {
      guard let group = adapter.group else { continue }
      if members[group] == nil { order.append(group) }
      members[group, default: []].append(adapter)
    }
    return order.map { ($0, members[$0]!) }
  }

  /// Checks that the model, every data and validation file exist.
  public func checkFiles() throws {
    if !FileManager.default.fileExists(atPath: model) {
      throw JobFileError(
        .missingFile, file: path, line: nil, keyPath: "model", "no such file or folder: \(model)")
    }
    for adapter in adapters {
      for key in ["data", "validation_data"] {
        guard let file = key == "data" ? adapter.settings.data : adapter.settings.validationData else {
          continue
        }
        var isFolder: ObjCBool = false
        if !FileManager.default.fileExists(atPath: file, isDirectory: &isFolder) || isFolder.boolValue {
          throw adapter.origin(of: key).error(
            .missingFile,
            isFolder.boolValue ? "\(file) is a folder, expected a JSON Lines file" : "no such file: \(file)")
        }
      }
    }
  }

  /// Checks the files and that the adapters' rank groups fit on `ranks` ranks (see
  /// ``Planner/layout(_:ranks:)``), before any model is loaded.
  public func validate(ranks: Int) throws {
    try checkFiles()
    _ = try Planner.layout(adapters, ranks: ranks)
  }
}

/// Resolves paths against the job file's folder, expanding `~`.
struct PathResolver {
  var folder: String

  func resolve(_ path: String) -> String {
    let expanded = (path as NSString).expandingTildeInPath
    let absolute = expanded.hasPrefix("/") ? expanded : (folder as NSString).appendingPathComponent(expanded)
    return URL(fileURLWithPath: absolute).standardizedFileURL.path
  }
}

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
    self.origins = origins
    if settings.data == nil {
      throw field.error(.missingKey, "'data' is required (in the adapter or in defaults)")
    }

    explicitPlacement = values["placement"] != nil
    placement = try values["placement"].map(JobFile.placement) ?? jobPlacement
    if let g = values["group"] {
      let name = try g.string()
      try Self.checkName(name, g, what: "group")
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

    if let s = values["sweep"] {
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
    if let h = values["successive_halving"] {
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

  /// The adapter, or its sweep's members, resolved.
  func expand(resolver: PathResolver, jobOutput: String?, outputOrigin: Origin?) throws -> [AdapterJob] {
    var base = settings
    base.data = base.data.map(resolver.resolve)
    base.validationData = base.validationData.map(resolver.resolve)
    let entryOrigin = field.origin

    // The output: the adapter's own, or <job output>/<name>; a sweep's members go beneath it.
    let ownOutput = base.output.map(resolver.resolve)
    func outputFolder(_ memberName: String) throws -> String {
      if let ownOutput { return sweep.isEmpty ? ownOutput : ownOutput + "/" + memberName }
      guard let jobOutput else {
        throw entryOrigin.error(.missingKey, "no output folder: set 'output' here or at the top of the file")
      }
      return jobOutput + "/" + memberName
    }
    var group = self.group
    var placement = self.placement
    if group == nil && !sweep.isEmpty && (placement == .auto || placement == .fused) {
      group = name
      placement = .fused
    } else if group == nil && placement == .fused {
      group = "fused"
    }
    var origins = self.origins
    origins["name"] = nameOrigin
    if ownOutput == nil, let outputOrigin { origins["output"] = outputOrigin }

    guard !sweep.isEmpty else {
      base.output = try outputFolder(name)
      try Self.checkBatch(base, origins: origins)
      return [
        AdapterJob(
          name: name, order: 0, settings: base, placement: placement, group: group, ranks: ranks,
          priority: priority,
          sweep: nil, origin: entryOrigin, origins: origins)
      ]
    }
    // Cartesian product, the first key outermost.
    var combinations: [[(key: String, field: YAMLField)]] = [[]]
    for (key, values) in sweep {
      combinations = combinations.flatMap { prefix in values.map { prefix + [(key, $0)] } }
    }
    return try combinations.enumerated().map { index, combination in
      var settings = base
      var memberOrigins = origins
      var parts: [String] = [name]
      var values: [[String]] = []
      settings = settings.merging(try YAMLField.adapterSettings(combination))
      for (key, field) in combination {
        memberOrigins[key] = field.origin
        let text = settings.text(of: key)
        parts.append(Self.abbreviation(key) + text)
        values.append([key, text])
      }
      let memberName = parts.joined(separator: "-").map { Self.allowed.contains($0) ? $0 : "_" }.reduce("") {
        $0 + String($1)
      }
      memberOrigins["name"] = sweepOrigin
      settings.output = try outputFolder(memberName)
      if let halving {
        let steps = settings.steps ?? (settings.epochs == nil ? TrainingSettings.Defaults.steps : nil)
        if let steps, let last = halving.rungs.last, last >= steps {
          throw (halvingOrigin ?? entryOrigin).error(
            .invalidValue, "rung \(last) is not below \(memberName)'s \(steps) steps")
        }
      }
      try Self.checkBatch(settings, origins: memberOrigins)
      return AdapterJob(
        name: memberName, order: 0, settings: settings, placement: placement, group: group, ranks: ranks,
        priority: priority,
        sweep: SweepMember(
          sweep: name, index: index, count: combinations.count, values: values, successiveHalving: halving),
        origin: entryOrigin, origins: memberOrigins)
    }
  }

  static let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")

  /// The short form of a swept key in member names: r, a, lr, d; others as written.
  static func abbreviation(_ key: String) -> String {
    ["rank": "r", "alpha": "a", "dropout": "d", "lr": "lr"][key] ?? key
  }

  /// `batch_size` must be a multiple of `micro_batch`.
  static func checkBatch(_ settings: AdapterSettings, origins: [String: Origin]) throws {
    guard settings.tokensPerBatch == nil else { return }
    let batch = settings.batchSize ?? TrainingSettings.Defaults.batchSize
    let micro = settings.microBatch ?? TrainingSettings.Defaults.microBatch
    if batch % micro != 0 {
      let origin = origins["micro_batch"] ?? origins["batch_size"] ?? origins["name"]!
      throw origin.error(.invalidValue, "batch_size \(batch) is not a multiple of micro_batch \(micro)")
    }
  }
}

extension AdapterSettings {
  /// Whether `key` has a value.
  func valueIsSet(_ key: String) -> Bool {
    (try? JSONSerialization.jsonObject(with: JSONEncoder().encode(self)) as? [String: Any])?[key] != nil
  }

  /// The value of `key` as text for names: integers as written, numbers in Swift's shortest form.
  func text(of key: String) -> String {
    guard let object = try? JSONSerialization.jsonObject(with: JSONEncoder().encode(self)) as? [String: Any],
      let value = object[key]
    else { return "" }
    switch key {
    case "lr", "alpha", "dropout", "epochs", "weight_decay", "beta1", "beta2", "eps", "max_grad_norm":
      return (value as? NSNumber).map { "\($0.doubleValue)" } ?? "\(value)"
    case "rslora", "train_on_prompt", "pack":
      return (value as? NSNumber).map { $0.boolValue ? "true" : "false" } ?? "\(value)"
    default:
      return "\(value)"
    }
  }
}
