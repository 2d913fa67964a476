import CBLAS

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

  /// Threads OpenBLAS uses for one call. Setting it overrides `OPENBLAS_NUM_THREADS`.
  public static var threads: Int {
    get { Int(openblas_get_num_threads()) }
    set { openblas_set_num_threads(Int32(max(1, newValue))) }
  }

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
