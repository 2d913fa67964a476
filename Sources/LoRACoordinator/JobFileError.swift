import LoRAYAML

/// A job file, or a plan made from it, that cannot be used (the settings files' error).
public typealias JobFileError = SettingsFileError
