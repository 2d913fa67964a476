/// A trie over the scalars of the special tokens, for leftmost-longest matching.
struct SpecialTokenMatcher: Sendable {
  private var children: [[UInt32: Int32]] = [[:]]
  /// The token ending at each node, or -1.
  private var terminal: [Int32] = [-1]
  /// Whether that token is matched only when parsing specials.
  private var controlOnly: [Bool] = [false]

  init(tokens: [String], kinds: [TokenKind]) {
    for (id, token) in tokens.enumerated() where !token.isEmpty {
      guard kinds[id] == .control || kinds[id] == .userDefined else { continue }
      var node = 0
      for scalar in token.unicodeScalars {
        if let child = children[node][scalar.value] {
          node = Int(child)
        } else {
          children.append([:])
          terminal.append(-1)
          controlOnly.append(false)
          children[node][scalar.value] = Int32(children.count - 1)
          node = children.count - 1
        }
      }
      if terminal[node] < 0 {
        terminal[node] = Int32(id)
        controlOnly[node] = kinds[id] == .control
      }
    }
  }

  /// The longest special token starting at `position`, if any.
  func longestMatch(in scalars: [Unicode.Scalar], at position: Int, parseSpecial: Bool)
    -> (id: Int32, length: Int)?
  {
    var node = 0
    var best: (id: Int32, length: Int)?
    var index = position
    while index < scalars.count, let child = children[node][scalars[index].value] {
      node = Int(child)
      index += 1
      if terminal[node] >= 0 && (parseSpecial || !controlOnly[node]) {
        best = (terminal[node], index - position)
      }
    }
    return best
  }
}
