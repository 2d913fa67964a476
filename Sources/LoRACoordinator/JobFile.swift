import Foundation
import LoRAModel
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
  public static let keys = [
    "model", "base_precision", "attention_precision", "output", "placement", "defaults", "adapters",
  ]
  /// Keys an adapter entry has besides the training settings.
  public static let adapterOnlyKeys = [
    "name", "placement", "group", "ranks", "priority", "sweep", "successive_halving", "parent",
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
  /// How the base is held (`base_precision`; default auto).
  public var basePrecision: BasePrecision
  /// How attention's products run (`attention_precision`; default auto).
  public var attentionPrecision = AttentionPrecision.auto
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
    var basePrecision = BasePrecision.auto
    if let field = top["base_precision"] {
      guard let value = BasePrecision(rawValue: try field.string()) else {
        throw field.error(
          .invalidValue,
          "base_precision must be one of \(BasePrecision.allCases.map(\.rawValue).joined(separator: ", "))")
      }
      basePrecision = value
    }
    var attentionPrecision = AttentionPrecision.auto
    if let field = top["attention_precision"] {
      guard let value = AttentionPrecision(rawValue: try field.string()) else {
        throw field.error(
          .invalidValue,
          "attention_precision must be one of \(AttentionPrecision.allCases.map(\.rawValue).joined(separator: ", "))"
        )
      }
      attentionPrecision = value
    }
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
        if let parent = parsed.parent {
          job.parent = parent.name
          job.origins["parent"] = parent.origin
        }
        adapters.append(job)
      }
    }
    var job = JobFile(
      path: path, folder: folder, model: model, basePrecision: basePrecision, output: output,
      placement: placement, defaults: defaults,
      adapters: adapters)
    job.attentionPrecision = attentionPrecision
    try job.checkNamesOutputsAndGroups()
    try job.checkTree()
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

  /// Checks the files and that the adapters' rank groups fit on `ranks` ranks, level by
  /// level of the tree (see ``Planner/layout(_:ranks:)``), before any model is loaded.
  public func validate(ranks: Int) throws {
    try checkFiles()
    for level in levels { _ = try Planner.layout(level, ranks: ranks) }
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
