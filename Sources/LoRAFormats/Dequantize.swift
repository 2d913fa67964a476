import LoRAKernels

/// Conversion of ggml blocks to Float32, following ggml's reference `dequantize_row_*`.
///
/// A kernel file: it works on raw pointers into a mapped file. Blocks are independent, so
/// large tensors are split across cores.
enum Dequantize {
  /// Writes `count` Float32 values decoded from `source` (laid out as `type`'s blocks).
  static func run(
    _ type: GGMLType, from source: UnsafeRawPointer, count: Int, into destination: UnsafeMutablePointer<Float>
  ) {
    let blocks = count / type.blockElements
    let chunks = blocks >= 4096 ? 64 : 1
    let perChunk = (blocks + chunks - 1) / chunks
    Parallel.forEach(chunks) { chunk in
      let first = chunk * perChunk
      let last = min(blocks, first + perChunk)
      guard first < last else { return }
      let src = source + first * type.blockBytes
      let dst = destination + first * type.blockElements
      run(type, src, blocks: last - first, dst)
    }
  }

  private static func run(
    _ type: GGMLType, _ src: UnsafeRawPointer, blocks: Int, _ dst: UnsafeMutablePointer<Float>
  ) {
    switch type {
    case .f32:
      for i in 0..<blocks {
        dst[i] = Float(bitPattern: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
      }
    case .f16:
      for i in 0..<blocks { dst[i] = half(src, 2 * i) }
    case .bf16:
      for i in 0..<blocks {
        dst[i] = Float(bitPattern: UInt32(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
      }
    case .q8_0:
      for b in 0..<blocks {
        let block = src + b * 34
        let d = half(block, 0)
        let out = dst + b * 32
        for j in 0..<32 {
          out[j] = d * Float(Int8(bitPattern: block.load(fromByteOffset: 2 + j, as: UInt8.self)))
        }
      }
    case .q4_0:
      for b in 0..<blocks {
        let block = src + b * 18
        let d = half(block, 0)
        let out = dst + b * 32
        for j in 0..<16 {
          let q = block.load(fromByteOffset: 2 + j, as: UInt8.self)
          out[j] = d * Float(Int(q & 0x0F) - 8)
          out[j + 16] = d * Float(Int(q >> 4) - 8)
        }
      }
    case .q4_1:
      for b in 0..<blocks {
        let block = src + b * 20
        let d = half(block, 0)
        let m = half(block, 2)
        let out = dst + b * 32
        for j in 0..<16 {
          let q = block.load(fromByteOffset: 4 + j, as: UInt8.self)
          out[j] = d * Float(q & 0x0F) + m
          out[j + 16] = d * Float(q >> 4) + m
        }
      }
    case .q5_0:
      for b in 0..<blocks {
        let block = src + b * 22
        let d = half(block, 0)
        let qh = block.loadUnaligned(fromByteOffset: 2, as: UInt32.self).littleEndian
        let out = dst + b * 32
        for j in 0..<16 {
          let q = block.load(fromByteOffset: 6 + j, as: UInt8.self)
          let high0 = UInt8(truncatingIfNeeded: ((qh >> UInt32(j)) << 4) & 0x10)
          let high1 = UInt8(truncatingIfNeeded: (qh >> UInt32(j + 12)) & 0x10)
          out[j] = d * Float(Int((q & 0x0F) | high0) - 16)
          out[j + 16] = d * Float(Int((q >> 4) | high1) - 16)
        }
      }
    case .q5_1:
      for b in 0..<blocks {
        let block = src + b * 24
        let d = half(block, 0)
        let m = half(block, 2)
        let qh = block.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian
        let out = dst + b * 32
        for j in 0..<16 {
          let q = block.load(fromByteOffset: 8 + j, as: UInt8.self)
          let high0 = UInt8(truncatingIfNeeded: ((qh >> UInt32(j)) << 4) & 0x10)
          let high1 = UInt8(truncatingIfNeeded: (qh >> UInt32(j + 12)) & 0x10)
          out[j] = d * Float((q & 0x0F) | high0) + m
          out[j + 16] = d * Float((q >> 4) | high1) + m
        }
      }
    case .q4_K:
      for b in 0..<blocks {
        let block = src + b * 144
        let d = half(block, 0)
        let dmin = half(block, 2)
        let scales = block + 4
        var q = block + 16
        var out = dst + b * 256
        var scaleIndex = 0
        for _ in 0..<4 {
          let (d1, min1, d2, min2) = subBlockScales(scaleIndex, scales, d: d, dmin: dmin)
          for l in 0..<32 { out[l] = d1 * Float(q.load(fromByteOffset: l, as: UInt8.self) & 0x0F) - min1 }
          for l in 0..<32 { out[32 + l] = d2 * Float(q.load(fromByteOffset: l, as: UInt8.self) >> 4) - min2 }
          q += 32
          out += 64
          scaleIndex += 2
        }
      }
    case .q5_K:
      for b in 0..<blocks {
        let block = src + b * 176
        let d = half(block, 0)
        let dmin = half(block, 2)
        let scales = block + 4
        let qh = block + 16
        var ql = block + 48
        var out = dst + b * 256
        var scaleIndex = 0
        var u1: UInt8 = 1
        var u2: UInt8 = 2
        for _ in 0..<4 {
          let (d1, min1, d2, min2) = subBlockScales(scaleIndex, scales, d: d, dmin: dmin)
          for l in 0..<32 {
            let low = ql.load(fromByteOffset: l, as: UInt8.self) & 0x0F
            let high: UInt8 = qh.load(fromByteOffset: l, as: UInt8.self) & u1 != 0 ? 16 : 0
            out[l] = d1 * Float(low + high) - min1
          }
          for l in 0..<32 {
            let low = ql.load(fromByteOffset: l, as: UInt8.self) >> 4
            let high: UInt8 = qh.load(fromByteOffset: l, as: UInt8.self) & u2 != 0 ? 16 : 0
            out[32 + l] = d2 * Float(low + high) - min2
          }
          ql += 32
          out += 64
          scaleIndex += 2
          u1 <<= 2
          u2 <<= 2
        }
      }
    case .q6_K:
      for b in 0..<blocks {
        let block = src + b * 210
        var ql = block
        var qh = block + 128
        var sc = block + 192
        let d = half(block, 208)
        var out = dst + b * 256
        for _ in 0..<2 {
          for l in 0..<32 {
            let s = l / 16
            let h = qh.load(fromByteOffset: l, as: UInt8.self)
            let a = ql.load(fromByteOffset: l, as: UInt8.self)
            let c = ql.load(fromByteOffset: l + 32, as: UInt8.self)
            let q1 = Int((a & 0x0F) | ((h & 3) << 4)) - 32
            let q2 = Int((c & 0x0F) | (((h >> 2) & 3) << 4)) - 32
            let q3 = Int((a >> 4) | (((h >> 4) & 3) << 4)) - 32
            let q4 = Int((c >> 4) | (((h >> 6) & 3) << 4)) - 32
            out[l] = d * Float(Int8(bitPattern: sc.load(fromByteOffset: s, as: UInt8.self))) * Float(q1)
            out[l + 32] =
              d * Float(Int8(bitPattern: sc.load(fromByteOffset: s + 2, as: UInt8.self))) * Float(q2)
            out[l + 64] =
              d * Float(Int8(bitPattern: sc.load(fromByteOffset: s + 4, as: UInt8.self))) * Float(q3)
            out[l + 96] =
              d * Float(Int8(bitPattern: sc.load(fromByteOffset: s + 6, as: UInt8.self))) * Float(q4)
          }
          out += 128
          ql += 64
          qh += 32
          sc += 8
        }
      }
    }
  }

  /// Scales and minimums of the two 32-element sub-blocks `j` and `j + 1` of a Q4_K/Q5_K block.
  @inline(__always)
  private static func subBlockScales(_ j: Int, _ scales: UnsafeRawPointer, d: Float, dmin: Float) -> (
    Float, Float, Float, Float
  ) {
    let (sc1, m1) = scaleMinK4(j, scales)
    let (sc2, m2) = scaleMinK4(j + 1, scales)
    return (d * Float(sc1), dmin * Float(m1), d * Float(sc2), dmin * Float(m2))
  }

  /// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K block.
  @inline(__always)
  private static func scaleMinK4(_ j: Int, _ q: UnsafeRawPointer) -> (UInt8, UInt8) {
    func byte(_ i: Int) -> UInt8 { q.load(fromByteOffset: i, as: UInt8.self) }
    if j < 4 { return (byte(j) & 63, byte(j + 4) & 63) }
    return ((byte(j + 4) & 0x0F) | ((byte(j - 4) >> 6) << 4), (byte(j + 4) >> 4) | ((byte(j) >> 6) << 4))
  }

  @inline(__always)
  private static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
    Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian))
  }
}
