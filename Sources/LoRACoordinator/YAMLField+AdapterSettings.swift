import LoRAYAML

extension YAMLField {
  /// The adapter settings of this mapping, decoded through Yams' Codable support and
  /// validated (``AdapterSettings/validate()``); its other keys are the caller's. Errors name
  /// the file, line and key path.
  func adapterSettings() throws -> AdapterSettings {
    let settings = try decode(AdapterSettings.self)
    do { try settings.validate() } catch { throw invalid(at: error.keyPath, error.message) }
    return settings
  }

  /// The adapter settings `key: value` of `pairs` (a sweep's values, which sit in lists);
  /// errors name each value's own line and key path (`adapters[0].sweep.rank[1]`).
  static func adapterSettings(_ pairs: [(key: String, field: YAMLField)]) throws -> AdapterSettings {
    do {
      return try YAMLField.mapping(pairs).adapterSettings()
    } catch var error as SettingsFileError {
      if let keyPath = error.keyPath,
        let pair = pairs.first(where: { keyPath == $0.key || keyPath.hasPrefix($0.key + ".") })
      {
        error.keyPath = pair.field.path + keyPath.dropFirst(pair.key.count)
      }
      throw error
    }
  }
}
