import LoRAFormats

/// How a JSON Lines dataset is turned into examples. Coded with snake_case keys
/// ("format", "max_seq_length", "train_on_prompt", "add_eos", "skip_bad_lines", "packing",
/// "chat_format");
/// missing keys take the defaults below, and decoding fails when `maxSequenceLength < 2`.
public struct DatasetOptions: Sendable, Codable, Equatable {
  /// How each line is read; `.auto` tells it from the line's keys. Default `.auto`.
  public var format: DataFormat = .auto
  /// The longest example, in tokens (and the length of packed sequences). At least 2.
  /// Default 512.
  public var maxSequenceLength: Int = 512
  /// Train on prompt tokens too (prompt/completion and messages formats). Default false.
  public var trainOnPrompt: Bool = false
  /// Append the tokenizer's EOS (trained) to text and prompt/completion examples; messages
  /// already end each turn with "<|im_end|>" and input ids are taken as they are.
  /// Default true.
  public var addEOS: Bool = true
  /// Skip lines that cannot be read (counted in `DatasetStats.skippedLines`) instead of
  /// failing. Default false.
  public var skipBadLines: Bool = false
  /// Concatenate examples into sequences of exactly `maxSequenceLength` tokens. Default false.
  public var pack: Bool = false
  /// How messages are rendered; nil: the model's own layout (`resolvingChatFormat`), or
  /// ChatML when the vocabulary has "<|im_start|>". Default nil.
  public var chatFormat: ChatFormat?

  public init(
    format: DataFormat = .auto, maxSequenceLength: Int = 512, trainOnPrompt: Bool = false,
    addEOS: Bool = true, skipBadLines: Bool = false, pack: Bool = false, chatFormat: ChatFormat? = nil
  ) {
    self.chatFormat = chatFormat
    self.format = format
    self.maxSequenceLength = maxSequenceLength
    self.trainOnPrompt = trainOnPrompt
    self.addEOS = addEOS
    self.skipBadLines = skipBadLines
    self.pack = pack
  }

  /// Throws `DataError.invalidOption` when an option is out of range.
  public func validate() throws(DataError) {
    if maxSequenceLength < 2 {
      throw .invalidOption("max sequence length must be at least 2, got \(maxSequenceLength)")
    }
  }

  /// These options with `chatFormat` set from the model's chat template when none was
  /// given (left nil when the template is not one `ChatFormat` knows).
  public func resolvingChatFormat(template: String?, tokenizer: Tokenizer) -> DatasetOptions {
    var options = self
    options.chatFormat = chatFormat ?? ChatFormat.detect(template: template, tokenizer: tokenizer)
    return options
  }

  enum CodingKeys: String, CodingKey {
    case format
    case maxSequenceLength = "max_seq_length"
    case trainOnPrompt = "train_on_prompt"
    case addEOS = "add_eos"
    case skipBadLines = "skip_bad_lines"
    case pack = "packing"
    case chatFormat = "chat_format"
  }

  public init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    let defaults = DatasetOptions()
    format = try container.decodeIfPresent(DataFormat.self, forKey: .format) ?? defaults.format
    maxSequenceLength =
      try container.decodeIfPresent(Int.self, forKey: .maxSequenceLength) ?? defaults.maxSequenceLength
    trainOnPrompt = try container.decodeIfPresent(Bool.self, forKey: .trainOnPrompt) ?? defaults.trainOnPrompt
    addEOS = try container.decodeIfPresent(Bool.self, forKey: .addEOS) ?? defaults.addEOS
    skipBadLines = try container.decodeIfPresent(Bool.self, forKey: .skipBadLines) ?? defaults.skipBadLines
    pack = try container.decodeIfPresent(Bool.self, forKey: .pack) ?? defaults.pack
    chatFormat = try container.decodeIfPresent(ChatFormat.self, forKey: .chatFormat)
    do throws(DataError) {
      try validate()
    } catch {
      throw DecodingError.dataCorruptedError(
        forKey: .maxSequenceLength, in: container, debugDescription: error.description)
    }
  }
}
