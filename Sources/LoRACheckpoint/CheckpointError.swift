/// Why a checkpoint cannot be written, read or used. Each message names the file and says
/// what to do.
public enum CheckpointError: Error, Equatable, CustomStringConvertible {
  /// The file is not a checkpoint at all (wrong magic, empty).
  case notACheckpoint(file: String, reason: String)
  /// Written by a newer version of the format.
  case futureVersion(file: String, version: UInt32)
  /// The file ends early (no footer, or the table or a tensor points past the end).
  case truncated(file: String, reason: String)
  /// Header, table or tensor bytes do not match their checksum, or do not decode.
  case corrupt(file: String, reason: String)
  /// A delta checkpoint's base file is missing or is not the one it was written against.
  case missingDeltaBase(file: String, base: String, reason: String)
  /// The adapter was trained on another base model.
  case wrongBase(file: String, expected: String, found: String)
  /// The checkpoint does not fit what it is used for (weights-only for resume, other
  /// adapter layout, options that differ).
  case mismatch(file: String, reason: String)
  /// A file or folder could not be written; earlier checkpoints are untouched.
  case writeFailed(path: String, reason: String)
  /// No usable checkpoint where one was expected.
  case noCheckpoint(path: String, reason: String)

  public var description: String {
    switch self {
    case .notACheckpoint(let file, let reason):
      return "\(file): not a swift-lora-dist checkpoint (\(reason))"
    case .futureVersion(let file, let version):
      return
        "\(file): written by a newer swift-lora-dist (checkpoint format version \(version)); this build reads "
        + "version \(CheckpointFormat.version): upgrade swift-lora-dist to read it"
    case .truncated(let file, let reason):
      return
        "\(file): truncated (\(reason)); the write did not finish or the copy is incomplete: use an earlier checkpoint"
    case .corrupt(let file, let reason):
      return "\(file): corrupt (\(reason)); the file was damaged: use an earlier checkpoint"
    case .missingDeltaBase(let file, let base, let reason):
      return
        "\(file): is stored as changes against \(base), which \(reason); keep the two files together in one folder"
    case .wrongBase(let file, let expected, let found):
      return
        "\(file): the adapter was trained on base model \(expected), but the loaded model is \(found); "
        + "load the base it was trained on, or pass --force if you know the two are compatible"
    case .mismatch(let file, let reason): return "\(file): \(reason)"
    case .writeFailed(let path, let reason):
      return "cannot write checkpoint \(path): \(reason); earlier checkpoints are untouched"
    case .noCheckpoint(let path, let reason): return "\(path): \(reason)"
    }
  }
}
