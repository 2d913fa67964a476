import LoRAKernels

/// Prompt and prefix tuning in the forward and backward passes, as PEFT applies them: prompt
/// rows are ordinary rows at positions 0..<N (their outputs predict nothing); prefix keys and
/// values sit in front of every layer's own, unrotated, and the tokens take positions N.. .
extension LlamaModel {
  /// Writes `a.hidden(0)`: each sequence's prompt-tuning rows (if any), then its tokens' embeddings.
  /// - tokens: B·T ids (T = `a.tokenLength`).
  func embed(tokens: [Int32], _ a: LlamaActivations) {
    guard let v = a.virtual, a.virtualRows > 0 else {
      Embedding.forward(a.hidden(0), table: weights.embedding, ids: tokens)
      return
    }
    let (d, n, t) = (config.hiddenSize, a.virtualRows, a.tokenLength)
    let hidden = a.hidden(0)
    for b in 0..<a.batch {
      hidden.view(offset: b * a.length * d, shape: [n, d]).copy(from: v.embedding)
      Embedding.forward(
        hidden.view(offset: (b * a.length + n) * d, shape: [t, d]), table: weights.embedding,
        ids: Array(tokens[b * t..<(b + 1) * t]))
    }
  }

  /// The prefix table [N, W] of this pass: the embedding itself, or the projection's output
  /// (computed into `a.prefixTable`).
  @discardableResult
  func prefixTable(_ a: LlamaActivations, compute: Bool) -> Tensor? {
    guard let v = a.virtual, a.prefixLength > 0 else { return nil }
    guard let p = v.projection else { return v.embedding }
    if compute {
      PrefixProjection.forward(
        table: a.prefixTable, hidden: a.prefixHidden, e: v.embedding, w1: p.w1, b1: p.b1, w2: p.w2, b2: p.b2)
    }
    return a.prefixTable
  }

  /// Virtual token i's keys (part 0) or values (part 1) for layer l in a prefix table (or
  /// its gradient) [N, L·2·KVW]: [KVW].
  func prefixRow(_ table: Tensor, _ i: Int, layer l: Int, part: Int) -> Tensor {
    let w = config.kvHeads * config.headSize
    return table.view(offset: i * table.shape[1] + (2 * l + part) * w, shape: [w])
  }

  /// Fills `a.joinedKeys`/`a.joinedValues` with layer l's prefix rows, then each sequence's
  /// own keys and values (`keys`, `values`: [B·T, KVW], RoPE applied to the keys).
  func joinPrefix(layer l: Int, keys: Tensor, values: Tensor, _ a: LlamaActivations) {
    guard let table = prefixTable(a, compute: false) else { return }
    let (n, t, w) = (a.prefixLength, a.length, config.kvHeads * config.headSize)
    for b in 0..<a.batch {
      for (joined, own, part) in [(a.joinedKeys, keys, 0), (a.joinedValues, values, 1)] {
        let start = b * (n + t) * w
        for i in 0..<n {
          joined.view(offset: start + i * w, shape: [w]).copy(
            from: prefixRow(table, i, layer: l, part: part))
        }
        joined.view(offset: start + n * w, shape: [t, w]).copy(
          from: own.view(offset: b * t * w, shape: [t, w]))
      }
    }
  }

  /// Splits the joined key and value gradients of layer l: each sequence's own rows into
  /// dk/dv ([B·T, KVW]), the prefix rows, summed over the batch, into the table's gradient.
  func splitPrefixGradient(layer l: Int, dk: Tensor, dv: Tensor, _ a: LlamaActivations) {
    guard let v = a.virtual, a.prefixLength > 0 else { return }
    let gradient = v.projection == nil ? v.gradEmbedding : a.prefixTableGradient
    let (n, t, w) = (a.prefixLength, a.length, config.kvHeads * config.headSize)
    for b in 0..<a.batch {
      for (joined, own, part) in [(a.joinedKeyGradient, dk, 0), (a.joinedValueGradient, dv, 1)] {
        let start = b * (n + t) * w
        for i in 0..<n {
          prefixRow(gradient, i, layer: l, part: part).add(
            joined.view(offset: start + i * w, shape: [w]))
        }
        own.view(offset: b * t * w, shape: [t, w]).copy(
          from: joined.view(offset: start + n * w, shape: [t, w]))
      }
    }
  }

  /// After the layers' backward: the prompt rows' input gradient (`dHidden` = d hidden(0),
  /// [B·(N+T), D]) summed over the batch into the prompt embedding's gradient, or the prefix
  /// table's gradient taken back through the projection.
  func finishVirtualBackward(dHidden: Tensor, _ a: LlamaActivations) {
    guard let v = a.virtual else { return }
    if a.virtualRows > 0 {
      let (n, d) = (a.virtualRows, config.hiddenSize)
      for b in 0..<a.batch {
        v.gradEmbedding.add(dHidden.view(offset: b * a.length * d, shape: [n, d]))
      }
    } else if let p = v.projection {
      PrefixProjection.backward(
        dTable: a.prefixTableGradient, hidden: a.prefixHidden, e: v.embedding, w1: p.w1, w2: p.w2,
        gE: v.gradEmbedding, gW1: p.gradW1, gB1: p.gradB1, gW2: p.gradW2, gB2: p.gradB2,
        dPre: a.prefixPreGradient)
    }
  }

  /// Puts the prefix keys and values in the first N positions of an empty `cache`, for
  /// every sequence, so that generation continues after them as PEFT's past_key_values do.
  func primeCache(_ cache: KVCache, _ a: LlamaActivations) {
    guard let table = prefixTable(a, compute: true) else { return }
    precondition(cache.length == 0, "prefix keys go into an empty cache")
    let (n, w) = (a.prefixLength, config.kvHeads * config.headSize)
    precondition(n <= cache.capacity, "a prefix of \(n) positions in a cache of \(cache.capacity)")
    for l in 0..<config.layers {
      for (stored, part) in [(cache.keys[l], 0), (cache.values[l], 1)] {
        for b in 0..<cache.batch {
          for i in 0..<n {
            stored.view(offset: (b * cache.capacity + i) * w, shape: [w]).copy(
              from: prefixRow(table, i, layer: l, part: part))
          }
        }
      }
    }
    cache.length = n
  }

  /// B·T targets laid out on the pass's rows: −1 on each sequence's prompt rows (they
  /// predict nothing, as PEFT's −100 labels), then the sequence's own.
  func rowTargets(_ targets: [Int32], _ a: LlamaActivations) -> [Int32] {
    guard a.virtualRows > 0 else { return targets }
    let (n, t) = (a.virtualRows, a.tokenLength)
    precondition(targets.count == a.batch * t, "\(targets.count) targets for \(a.batch)×\(t) tokens")
    if a.rowTargets.count != a.batch * a.length {
      a.rowTargets = [Int32](repeating: -1, count: a.batch * a.length)
    }
    for b in 0..<a.batch {
      for i in 0..<n { a.rowTargets[b * a.length + i] = -1 }
      for i in 0..<t { a.rowTargets[b * a.length + n + i] = targets[b * t + i] }
    }
    return a.rowTargets
  }
}

extension LlamaModel {
  /// Starts an adapter's virtual tokens from real ones instead of noise (what Lester et al.
  /// and Li & Liang found to train best): N token ids drawn from the vocabulary with `seed`;
  /// prompt embeddings copy their embeddings, and a prefix table (without projection) the
  /// keys and values the base computes for them at positions 0..<N. A projection keeps
  /// PEFT's initialisation (`LoRAAdapter.initialize`).
  public func initializeVirtualTokens(of adapter: LoRAAdapter, seed: UInt64) {
    guard let v = adapter.virtualTokens, v.projection == nil else { return }
    var random = SeededRandom(seed: seed ^ 0x746F_6B65_6E73)
    let n = v.config.tokens
    let ids = (0..<n).map { _ in Int32(random.next() % UInt64(config.vocabularySize)) }
    if v.config.kind == .prompt {
      Embedding.forward(v.embedding, table: weights.embedding, ids: ids)
      return
    }
    let cache = KVCache(config: config, batch: 1, capacity: n)
    forward(
      tokens: ids,
      activations: LlamaActivations(config: config, batch: 1, length: n, keepForBackward: false, keys: n),
      cache: cache)
    let w = config.kvHeads * config.headSize
    for l in 0..<config.layers {
      for (stored, part) in [(cache.keys[l], 0), (cache.values[l], 1)] {
        for i in 0..<n {
          prefixRow(v.embedding, i, layer: l, part: part).copy(
            from: stored.view(offset: i * w, shape: [w]))
        }
      }
    }
  }
}
