import Foundation

/// Piece bytes to ids, shared across threads behind a lock; bounded by clearing when full.
final class PieceCache: @unchecked Sendable {
  private let lock = NSLock()
  private var entries: [[UInt8]: [Int32]] = [:]
  private static let capacity = 1 << 16
  private static let longestPiece = 128

  func lookup(_ piece: [UInt8]) -> [Int32]? {
    guard piece.count <= Self.longestPiece else { return nil }
    lock.lock()
    defer { lock.unlock() }
    return entries[piece]
  }

  func store(_ piece: [UInt8], _ ids: [Int32]) {
    guard piece.count <= Self.longestPiece else { return }
    lock.lock()
    defer { lock.unlock() }
    if entries.count >= Self.capacity { entries.removeAll(keepingCapacity: true) }
    entries[piece] = ids
  }
}
