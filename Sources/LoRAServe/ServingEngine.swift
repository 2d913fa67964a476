import Foundation
import LoRAKernels
import LoRAModel

/// Serves generation requests for the base and every adapter of a store with continuous
/// batching: one thread runs decode steps over all active sequences, whatever their adapter
/// (one base pass per step, each sequence with its own KV cache); new requests are prefilled
/// and join between steps, finished ones leave.
///
/// Requests come in through `submit`, from any thread or task; their tokens come back on an
/// `AsyncStream`. Dropping or cancelling the stream frees the sequence at the next step.
public final class ServingEngine: @unchecked Sendable {
  public let store: AdapterStore
  public let settings: ServeSettings
  public let router: Router
  public var model: LlamaModel { store.model }
  /// Longest prompt plus max_tokens.
  public let contextLength: Int
  /// Rows per frozen product call (see `RowInvariantGEMM`).
  public var blockRows: Int { decoder.blockRows }

  /// A request's handle: its id, its events, and a way to stop it.
  public final class Handle: Sendable {
    public let id: UInt64
    public let events: AsyncStream<CompletionEvent>
    let engine: ServingEngine
    init(id: UInt64, events: AsyncStream<CompletionEvent>, engine: ServingEngine) {
      self.id = id
      self.events = events
      self.engine = engine
    }
    /// Ends the generation at the next step (its stream finishes with `.cancelled`).
    public func cancel() { engine.cancel(id) }
  }

  struct Pending {
    var id: UInt64
    var request: CompletionRequest
    var continuation: AsyncStream<CompletionEvent>.Continuation
  }

  final class Active {
    let id: UInt64
    let request: CompletionRequest
    let name: String
    let sequence: DecodeSequence
    var sampler: Sampler
    let continuation: AsyncStream<CompletionEvent>.Continuation
    var last: Int32 = 0
    var generated = 0
    init(
      id: UInt64, request: CompletionRequest, name: String, sequence: DecodeSequence,
      continuation: AsyncStream<CompletionEvent>.Continuation
    ) {
      self.id = id
      self.request = request
      self.name = name
      self.sequence = sequence
      self.continuation = continuation
      sampler = Sampler(temperature: request.temperature, topP: request.topP, seed: request.seed)
    }
  }

  let decoder: BatchDecoder
  private let condition = NSCondition()
  private var pending: [Pending] = []
  private var cancelled: Set<UInt64> = []
  private var accepting = true
  private var running = false
  private var nextID: UInt64 = 1
  private var counters = EngineStats()
  private var drained: [CheckedContinuation<Void, Never>] = []
  private var thread: Thread?

  public init(store: AdapterStore, settings: ServeSettings = ServeSettings()) throws(ServeError) {
    try settings.validate()
    self.store = store
    self.settings = settings
    router = Router(threshold: settings.routeThreshold)
    contextLength = min(store.model.config.contextLength, store.model.rope.maxPositions)
    decoder = BatchDecoder(
      model: store.model, maxRows: settings.maxBatch, maxRank: settings.maxRank, blockRows: settings.blockRows
    )
  }

  /// Starts the decoding thread.
  public func start() {
    condition.lock()
    defer { condition.unlock() }
    guard thread == nil else { return }
    running = true
    let thread = Thread { [self] in loop() }
    thread.name = "swift-lora-dist decoder"
    thread.stackSize = 8 << 20
    self.thread = thread
    thread.start()
  }

  /// Queues a request. Checks what can be checked at once: the model name, the prompt and
  /// its length, the sampling fields.
  public func submit(_ request: CompletionRequest) throws(ServeError) -> Handle {
    // An adapter's virtual tokens (prompt or prefix tuning) take positions before the prompt.
    try request.check(
      context: contextLength - store.virtualPositions(request.model),
      vocabularySize: model.config.vocabularySize)
    if request.model != store.baseName && request.model != "auto" && !store.contains(request.model) {
      throw .unknownModel(name: request.model, available: [store.baseName, "auto"] + store.available())
    }
    condition.lock()
    defer { condition.unlock() }
    guard accepting else { throw .shuttingDown }
    guard pending.count < settings.maxQueue else { throw .queueFull(limit: settings.maxQueue) }
    let id = nextID
    nextID += 1
    let (events, continuation) = AsyncStream.makeStream(of: CompletionEvent.self)
    continuation.onTermination = { [weak self] reason in
      if case .cancelled = reason { self?.cancel(id) }
    }
    pending.append(Pending(id: id, request: request, continuation: continuation))
    counters.queueDepth = pending.count
    condition.signal()
    return Handle(id: id, events: events, engine: self)
  }

  /// Stops request `id` at the next step.
  public func cancel(_ id: UInt64) {
    condition.lock()
    cancelled.insert(id)
    condition.signal()
    condition.unlock()
  }

  /// Counters since start.
  public func stats() -> EngineStats {
    condition.lock()
    defer { condition.unlock() }
    return counters
  }

  /// Stops accepting requests, lets every accepted one finish, then stops the thread.
  public func shutdown() async {
    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
      condition.lock()
      accepting = false
      if running {
        drained.append(done)
        condition.signal()
        condition.unlock()
      } else {
        condition.unlock()
        done.resume()
      }
    }
  }

  // MARK: - The decoding thread

  private func loop() {
    var active: [Active] = []
    while true {
      condition.lock()
      while pending.isEmpty && active.isEmpty && accepting && cancelled.isEmpty {
        condition.wait()
      }
      if pending.isEmpty && active.isEmpty && !accepting {
        running = false
        let waiting = drained
        drained = []
        condition.unlock()
        for w in waiting { w.resume() }
        return
      }
      let stop = cancelled
      cancelled = []
      let admitted = takeAdmissible(
        room: settings.maxBatch - active.count, running: active.first?.request.model)
      counters.queueDepth = pending.count
      condition.unlock()

      // Cancelled: active ones leave now, pending ones are answered without running.
      active.removeAll { a in
        guard stop.contains(a.id) else { return false }
        finish(a, .cancelled)
        return true
      }
      for p in admitted {
        if stop.contains(p.id) {
          p.continuation.yield(
            .finished(.cancelled, promptTokens: p.request.prompt.count, completionTokens: 0))
          p.continuation.finish()
          continue
        }
        if let a = admit(p) { active.append(a) }
      }
      guard !active.isEmpty else {
        record { $0.active = 0 }
        continue
      }
      // Rows of one adapter side by side: one segment per adapter.
      active.sort { ObjectIdentifier(adapterKey($0)) < ObjectIdentifier(adapterKey($1)) }
      let logits = decoder.step(active.map(\.sequence), tokens: active.map(\.last))
      let v = model.config.vocabularySize
      var finished: Set<Int> = []
      for (i, a) in active.enumerated() {
        let token = a.sampler.next(logits.view(offset: i * v, shape: [v]))
        if emit(a, token) { finished.insert(i) }
      }
      record {
        $0.steps += 1
        $0.stepRows += active.count
        $0.active = active.count - finished.count
      }
      active = active.enumerated().filter { !finished.contains($0.offset) }.map(\.element)
    }
  }

  /// Pending requests that may join the batch now, oldest first (the lock is held). With
  /// the one-adapter schedule only those of the running model, or of the oldest request's
  /// model when the batch is empty.
  private func takeAdmissible(room: Int, running: String?) -> [Pending] {
    guard room > 0 else { return [] }
    guard settings.schedule == .oneAdapter, let model = running ?? pending.first?.request.model else {
      let taken = Array(pending.prefix(room))
      pending.removeFirst(taken.count)
      return taken
    }
    var taken: [Pending] = []
    var rest: [Pending] = []
    for p in pending {
      if taken.count < room && p.request.model == model { taken.append(p) } else { rest.append(p) }
    }
    pending = rest
    return taken
  }

  private let baseKey = NSObject()
  private func adapterKey(_ a: Active) -> AnyObject { a.sequence.adapter ?? baseKey }

  /// Resolves the model, prefills the prompt and reports the first token; nil when the
  /// request already finished (one token, a stop token, or the adapter went away).
  private func admit(_ p: Pending) -> Active? {
    var name = p.request.model
    if name == "auto" {
      let choice = router.choose(prompt: p.request.prompt, model: model, store: store)
      name = choice.adapter ?? store.baseName
      record {
        $0.routed += 1
        if choice.adapter == nil { $0.routedToBase += 1 }
      }
    }
    let adapter: LoRAAdapter?
    do {
      adapter = name == store.baseName ? nil : try store.acquire(name)
    } catch {
      // Unloaded between submit and now: the request ends without output.
      p.continuation.yield(.routed(adapter: nil))
      p.continuation.yield(.finished(.cancelled, promptTokens: p.request.prompt.count, completionTokens: 0))
      p.continuation.finish()
      return nil
    }
    p.continuation.yield(.routed(adapter: adapter == nil ? nil : name))
    if let adapter, adapter.virtualPositions + p.request.prompt.count + p.request.maxTokens > contextLength {
      // Routed to an adapter loaded after the request was checked, whose virtual tokens leave too little room.
      p.continuation.yield(.finished(.length, promptTokens: p.request.prompt.count, completionTokens: 0))
      p.continuation.finish()
      return nil
    }
    let sequence = DecodeSequence(
      config: model.config, adapter: adapter,
      capacity: (adapter?.virtualPositions ?? 0) + p.request.prompt.count + p.request.maxTokens)
    let a = Active(id: p.id, request: p.request, name: name, sequence: sequence, continuation: p.continuation)
    record {
      $0.perModel[name, default: .init()].requests += 1
      $0.perModel[name, default: .init()].promptTokens += p.request.prompt.count
    }
    let token = a.sampler.next(decoder.prefill(sequence, prompt: p.request.prompt))
    return emit(a, token) ? nil : a
  }

  /// Reports `token`; true when the sequence finished with it.
  private func emit(_ a: Active, _ token: Int32) -> Bool {
    a.generated += 1
    a.last = token
    a.continuation.yield(.token(token))
    record { $0.perModel[a.name, default: .init()].generatedTokens += 1 }
    if a.request.stopTokens.contains(token) {
      finish(a, .stop)
      return true
    }
    if a.generated >= a.request.maxTokens {
      finish(a, .length)
      return true
    }
    return false
  }

  private func finish(_ a: Active, _ reason: FinishReason) {
    if reason == .cancelled { record { $0.perModel[a.name, default: .init()].cancelled += 1 } }
    a.continuation.yield(
      .finished(reason, promptTokens: a.request.prompt.count, completionTokens: a.generated))
    a.continuation.finish()
  }

  private func record(_ change: (inout EngineStats) -> Void) {
    condition.lock()
    change(&counters)
    condition.unlock()
  }
}
