import CBLAS
import Foundation

/// What the linked BLAS is and how many threads it uses.
public enum BLAS {
  /// The CPU kernel family OpenBLAS chose at start-up (e.g. "Zen", "Haswell", "SkylakeX").
  public static var coreName: String {
    guard let name = openblas_get_corename() else { return "unknown" }
    return String(cString: name)
  }

  /// OpenBLAS's build configuration (version, threading, features).
  public static var configuration: String {
    guard let config = openblas_get_config() else { return "unknown" }
    return String(cString: config)
  }

  /// Threads matrix products use: the width of the project's own kernel threads
  /// (`Parallel.width`), OpenBLAS itself staying single-threaded. Defaults to
  /// `OPENBLAS_NUM_THREADS` or the number of cores, as OpenBLAS would.
  public static var threads: Int {
    get { Parallel.width }
    set { Parallel.width = newValue }
  }

  /// The threads OpenBLAS would start by itself (before `threads` is set).
  public static var defaultThreads: Int { Int(openblas_get_num_threads()) }

  static func setInternalThreads(_ count: Int) { openblas_set_num_threads(Int32(count)) }

  /// Threading model of the build: "sequential", "pthreads" or "OpenMP".
  public static var threading: String {
    switch openblas_get_parallel() {
    case 0: return "sequential"
    case 1: return "pthreads"
    case 2: return "OpenMP"
    default: return "unknown"
    }
  }
}

extension BLAS {
  /// Kernel families OpenBLAS falls back to when it does not recognise a CPU; all of them
  /// predate AVX2, so a modern CPU running one loses most of its speed.
  static let fallbackCores: Set<String> = [
    "Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Katmai", "Banias", "Northwood",
    "Sandybridge", "generic", "Generic",
  ]

  /// The widest vector extensions this CPU reports: "avx512", "avx2+fma", "avx" or "sse".
  public static func cpuVectorFeatures(cpuinfo: String? = nil) -> String {
    let text = cpuinfo ?? (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else {
      return "unknown"
    }
    let flags = Set(line.split(separator: " ").map(String.init))
    if flags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl", "avx512dq"]) { return "avx512" }
    if flags.isSuperset(of: ["avx2", "fma"]) { return "avx2+fma" }
    if flags.contains("avx") { return "avx" }
    return "sse"
  }

  /// The kernels OpenBLAS chooses for AVX-512 CPUs.
  static let avx512Cores: Set<String> = ["SkylakeX", "Cooperlake", "SapphireRapids"]

  /// The CPU's vendor and family as /proc/cpuinfo gives them ("AuthenticAMD", 25), nil
  /// when it does not.
  public static func cpuFamily(cpuinfo: String? = nil) -> (vendor: String, family: Int)? {
    let text = cpuinfo ?? (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    func value(_ key: String) -> String? {
      guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key) }),
        let colon = line.firstIndex(of: ":")
      else { return nil }
      return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    guard let vendor = value("vendor_id"), let family = value("cpu family").flatMap({ Int($0) }) else {
      return nil
    }
    return (vendor, family)
  }

  /// The `OPENBLAS_CORETYPE` to run with instead of OpenBLAS's own choice, nil to keep it.
  /// A fallback kernel is replaced as `suggestedCoreType` says. On AMD Zen 4 (family 25 with
  /// AVX-512; its cores run each 512-bit operation as two 256-bit halves) OpenBLAS's AVX-512
  /// kernels give way to its AVX2 kernel `Haswell`, which ran training steps 3–10% faster
  /// there (docs/benchmarks.md). Zen 5 (family 26) has full 512-bit units and keeps them.
  public static func preferredCoreType(
    current: String, features: String, cpu: (vendor: String, family: Int)?
  ) -> String? {
    if let suggestion = suggestedCoreType(current: current, features: features) { return suggestion }
    if let cpu, cpu.vendor == "AuthenticAMD", cpu.family == 25, avx512Cores.contains(current) {
      return "Haswell"
    }
    return nil
  }

  /// The `OPENBLAS_CORETYPE` to try when OpenBLAS chose a fallback kernel for a CPU that
  /// supports a faster one; nil when the chosen kernel already fits.
  public static func suggestedCoreType(current: String, features: String) -> String? {
    guard fallbackCores.contains(current) else { return nil }
    switch features {
    case "avx512": return "SkylakeX"
    case "avx2+fma": return "Haswell"
    default: return nil
    }
  }
}
