/// Checking that every rank is about to do the same thing.
extension Communicator {
  /// Compares named values (hashes of settings, data, the base model) across ranks; when
  /// any rank's value differs from rank 0's, every rank throws the same error naming the
  /// ranks and the parts that differ.
  ///
  /// - Throws: `CommunicatorError.disagreement`.
  public func checkAgreement(_ parts: [(name: String, value: String)]) throws {
    guard size > 1 else { return }
    let mine = parts.map { "\($0.name)=\($0.value)" }.joined(separator: "\n")
    let all = try allgather(Array(mine.utf8)).map { String(decoding: $0, as: UTF8.self) }
    let reference = all[0].split(separator: "\n", omittingEmptySubsequences: false)
    var differences: [String] = []
    for (rank, text) in all.enumerated().dropFirst() {
      let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
      let names = parts.indices.filter {
        $0 >= lines.count || $0 >= reference.count || lines[$0] != reference[$0]
      }
      .map { parts[$0].name }
      if !names.isEmpty { differences.append("rank \(rank): \(names.joined(separator: ", "))") }
    }
    guard differences.isEmpty else {
      throw CommunicatorError.disagreement(
        "ranks differ from rank 0 in " + differences.joined(separator: "; ")
          + "; every rank must be given the same settings, data files and base model")
    }
  }
}
