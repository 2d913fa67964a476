import Foundation

/// The tiny models of LoRAModelTests (one copy of the fixtures in the repository).
enum Fixtures {
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("LoRAModelTests/Fixtures")
  static func path(_ name: String) -> String { root.appendingPathComponent(name).path }
}
