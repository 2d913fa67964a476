/// A binary min-heap of packed `rank << 32 | position` keys.
struct MinHeap {
  private var items: [UInt64] = []

  mutating func push(_ item: UInt64) {
    items.append(item)
    var child = items.count - 1
    while child > 0 {
      let parent = (child - 1) / 2
      guard items[child] < items[parent] else { break }
      items.swapAt(child, parent)
      child = parent
    }
  }

  mutating func pop() -> UInt64? {
    guard let top = items.first else { return nil }
    let last = items.removeLast()
    if !items.isEmpty {
      items[0] = last
      var parent = 0
      while true {
        let left = 2 * parent + 1
        guard left < items.count else { break }
        let right = left + 1
        let smaller = right < items.count && items[right] < items[left] ? right : left
        guard items[smaller] < items[parent] else { break }
        items.swapAt(smaller, parent)
        parent = smaller
      }
    }
    return top
  }
}
