import Foundation
import Hummingbird
import LoRAServe
import Logging
import NIOCore
import ServiceLifecycle

/// The engine as a service of the application's service group: started with it, and on
/// graceful shutdown (SIGTERM, SIGINT) drained after the HTTP server has stopped accepting
/// and answered its in-flight requests.
public struct EngineService: Service {
  public let engine: ServingEngine
  public init(engine: ServingEngine) { self.engine = engine }

  public func run() async throws {
    engine.start()
    // Waits for graceful shutdown (or cancellation), then lets accepted requests finish.
    try? await gracefulShutdown()
    await engine.shutdown()
  }
}

extension OpenAIServer {
  /// The Hummingbird application serving `router()` on `host:port` (port 0: any free port).
  /// `onRunning` gets the bound address once the server listens, e.g. ("127.0.0.1", 41873).
  /// Run it with `runService()`: SIGTERM and SIGINT stop accepting connections, finish the
  /// requests in flight, drain the engine, then `runService` returns.
  public func application(
    host: String, port: Int, onRunning: @escaping @Sendable (_ host: String, _ port: Int) -> Void
  ) -> some ApplicationProtocol {
    var logger = Logger(label: "swift-lora-dist.serve")
    logger.logLevel = .warning
    return Application(
      router: router(),
      configuration: .init(address: .hostname(host, port: port), serverName: "swift-lora-dist"),
      services: [EngineService(engine: engine)],
      onServerRunning: { channel in
        onRunning(host, channel.localAddress?.port ?? port)
      },
      logger: logger)
  }
}
