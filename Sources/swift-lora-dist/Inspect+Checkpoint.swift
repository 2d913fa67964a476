import Foundation
import LoRACheckpoint
import LoRARun

/// `inspect CHECKPOINT`: header, tensors, sizes, compression, and checks.
extension Inspect {
  func inspectCheckpoint(_ path: String) throws {
    let started = Date()
    let reader = try CheckpointReader(path: path)
    let opened = Date().timeIntervalSince(started)
    let h = reader.header
    var lines: [String] = []
    let kind =
      h.kind == .resumable
      ? "resumable (adapter, AdamW moments, training state)" : "weights only (\(h.precision.rawValue))"
    lines.append("checkpoint: \(reader.path) (format v\(reader.version), \(formatBytes(reader.fileSize)))")
    lines.append(
      "kind: \(kind)\(h.deltaBase.map { "; stored as changes against \($0.file)" } ?? "; full")")
    lines.append("written: \(h.created) by \(h.codeVersion); sha256 \(reader.checksum.prefix(16))…")
    let dora = h.adapter.useDora
    let parameters = h.modules.reduce(0) {
      $0 + $1.rank * ($1.inFeatures + $1.outFeatures) + (dora ? $1.outFeatures : 0)
    }
    let ranks = Set(h.modules.map(\.rank)).sorted().map(String.init).joined(separator: "/")
    let targets = Set(h.modules.map { $0.name.split(separator: ".").last.map(String.init) ?? "" }).sorted()
    lines.append(
      "adapter: \(dora ? "DoRA, " : "")\(h.adapter.pissa != nil ? "PiSSA (\(h.adapter.initialization)), " : "")r \(ranks), alpha \(h.adapter.loraAlpha), scale \(h.scaleConvention), "
        + "\(targets.joined(separator: ",")) on \(Set(h.modules.map { $0.name.split(separator: ".")[2] }).count) layers: "
        + "\(h.modules.count) modules, \(grouped(parameters)) parameters")
    let c = h.base.config
    lines.append(
      "base: \(h.base.source) (\(BaseFingerprint.short(h.base.fingerprint))…), \(c.architecture) "
        + "\(c.layers) layers, width \(c.hiddenSize)")
    if let t = h.training {
      lines.append(
        "training: update \(t.step) of \(t.totalSteps), \(grouped(t.tokensSeen)) tokens seen "
          + "(\(grouped(t.trainedTokensSeen)) trained), data cursor \(t.samplesSeen) = epoch "
          + "\(format(Double(t.samplesSeen) / Double(max(t.exampleCount, 1)), 2)) of \(t.exampleCount) examples, "
          + "batch \(t.globalBatch), written by \(t.ranks) rank(s)"
          + (t.lastLoss.map { ", last loss \(format($0, 4))" } ?? ""))
    }
    if let s = h.schedule {
      lines.append(
        "schedule: \(s.kind), peak \(s.peak), warmup \(s.warmupSteps), \(s.totalSteps) updates; next rate "
          + String(format: "%.3e", s.nextRate))
    }
    if let o = h.optimizer {
      lines.append(
        "optimizer: \(o.name) step \(o.step), betas \(o.beta1)/\(o.beta2), eps \(o.eps), weight decay \(o.weightDecay), "
          + "clip \(o.maxGradNorm)" + (o.loraplusLRRatio.map { ", LoRA+ B learning rate × \($0)" } ?? "")
          + (o.objective.map {
            ", objective \($0) (beta \(o.beta ?? 0), label smoothing \(o.labelSmoothing ?? 0))"
          } ?? ""))
    }
    if let r = h.rng { lines.append("rng: \(r.algorithm), seed \(r.seed)") }

    var rows: [[String]] = [
      ["tensor", "dtype", "shape", "raw", "stored", "ratio", "filters"] + (verify ? ["check"] : [])
    ]
    var failures: [String] = []
    for entry in reader.table {
      var row = [
        entry.name, entry.dtype.rawValue, "[" + entry.shape.map(String.init).joined(separator: ", ") + "]",
        formatBytes(entry.rawSize), formatBytes(entry.storedSize),
        format(Double(entry.rawSize) / Double(max(entry.storedSize, 1)), 2),
        entry.filters.isEmpty ? "none" : entry.filters.map(\.rawValue).joined(separator: "+"),
      ]
      if verify {
        do {
          _ = try reader.rawBytes(entry.name)
          row.append("ok")
        } catch {
          row.append("FAILED")
          failures.append("\(error)")
        }
      }
      rows.append(row)
    }
    let raw = reader.table.reduce(0) { $0 + $1.rawSize }
    let stored = reader.table.reduce(0) { $0 + $1.storedSize }
    lines.append("")
    lines += renderTable(rows, rightAligned: [3, 4, 5])
    lines.append(
      "total: \(formatBytes(raw)) raw, \(formatBytes(stored)) stored (\(format(Double(raw) / Double(max(stored, 1)), 2))×), "
        + "file \(formatBytes(reader.fileSize))")
    if filters {
      lines.append("")
      lines.append(
        "stored size under each filter chain (LZ4 after the filters; the writer keeps the smallest):")
      var filterRows: [[String]] = [["tensor", "filters", "stored", "ratio"]]
      for entry in reader.table {
        let rawBytes = try reader.rawBytes(entry.name)
        let reference = try reader.deltaBase().map { try $0.rawBytes(entry.name) }
        for (chain, size) in try CheckpointWriter.measureFilters(
          rawBytes, elementSize: entry.dtype.size, reference: reference)
        {
          filterRows.append([
            entry.name, chain.isEmpty ? "none" : chain.map(\.rawValue).joined(separator: "+"),
            formatBytes(size),
            format(Double(entry.rawSize) / Double(size), 2),
          ])
        }
        let bits = Double(entry.dtype.size * 8)
        let references: [(String, [UInt8]?)] = [("none", nil)] + (reference.map { [("xor", $0)] } ?? [])
        for (label, ref) in references {
          let entropy = CheckpointWriter.bitPlaneEntropy(
            rawBytes, elementSize: entry.dtype.size, reference: ref)
          filterRows.append([
            entry.name, "entropy bound, \(label): \(format(entropy, 1)) of \(Int(bits)) bits",
            formatBytes(Int(Double(entry.rawSize) * entropy / bits)), format(bits / max(entropy, 1e-9), 2),
          ])
        }
      }
      lines += renderTable(filterRows, rightAligned: [2, 3])
    }
    print(lines.joined(separator: "\n"))
    if verify {
      let verifyStarted = Date()
      try? reader.verify()
      let verifySeconds = Date().timeIntervalSince(verifyStarted)
      if let first = failures.first {
        throw CheckpointError.corrupt(file: reader.path, reason: "verification failed: \(first)")
      }
      print(
        "verified: every tensor matches its SHA-256 and LZ4 checksum\(h.deltaBase == nil ? "" : " (and the delta base)"); "
          + "opened in \(format(opened * 1000, 1)) ms, all tensors decoded in \(format(verifySeconds * 1000, 1)) ms"
      )
    }
  }
}
