import Foundation

#if canImport(Glibc)
  import Glibc
#endif

extension BLAS {
  /// The environment variable that controls automatic kernel selection: unset or "auto"
  /// lets `selectFasterCoreIfNeeded` act, "keep" leaves OpenBLAS's own choice alone.
  public static let coreSelectionVariable = "SWIFT_LORA_DIST_BLAS_CORE"
  /// Set on the restarted process to the kernel OpenBLAS had chosen by itself.
  public static let detectedCoreVariable = "SWIFT_LORA_DIST_BLAS_DETECTED_CORE"

  /// The kernel OpenBLAS chose before `selectFasterCoreIfNeeded` replaced it, if it did.
  public static var replacedCore: String? { ProcessInfo.processInfo.environment[detectedCoreVariable] }

  /// When OpenBLAS fell back to a generic pre-AVX2 kernel on a CPU that has AVX2 or
  /// AVX-512 (it does not recognise every CPU model), or chose a kernel that is slower on
  /// this CPU than another of its own (`preferredCoreType`), restarts this process with
  /// `OPENBLAS_CORETYPE` set to the better kernel (the kernel is chosen when the library
  /// loads, so it cannot change later). After the restart the new kernel's products are
  /// checked against double precision; a kernel that gets them wrong is dropped with one
  /// more restart. Does nothing when `OPENBLAS_CORETYPE` is set by the user or
  /// `SWIFT_LORA_DIST_BLAS_CORE=keep`.
  ///
  /// Call first thing in `main`, before any thread or MPI starts. On this project's
  /// AVX-512 machine it makes sgemm 5× faster (docs/benchmarks.md).
  public static func selectFasterCoreIfNeeded() {
    let environment = ProcessInfo.processInfo.environment
    if environment[coreSelectionVariable] == "keep" { return }
    if environment[detectedCoreVariable] != nil {
      // The restarted process: keep the kernel only if it computes correctly.
      if GEMM.verify() > 1e-4 {
        unsetenv("OPENBLAS_CORETYPE")
        unsetenv(detectedCoreVariable)
        setenv(coreSelectionVariable, "keep", 1)
        restart()
      }
      return
    }
    guard environment["OPENBLAS_CORETYPE"] == nil else { return }
    let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    guard
      let better = preferredCoreType(
        current: coreName, features: cpuVectorFeatures(cpuinfo: cpuinfo), cpu: cpuFamily(cpuinfo: cpuinfo))
    else { return }
    setenv("OPENBLAS_CORETYPE", better, 1)
    setenv(detectedCoreVariable, coreName, 1)
    restart()
  }

  /// Replaces this process with a fresh run of the same executable and arguments; returns
  /// only if that fails (the current process then simply goes on).
  private static func restart() {
    let arguments = CommandLine.arguments
    var cStrings = arguments.map { strdup($0) }
    cStrings.append(nil)
    execv("/proc/self/exe", &cStrings)
    for pointer in cStrings { free(pointer) }
  }
}
