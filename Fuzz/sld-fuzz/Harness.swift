import Foundation
import LoRAFuzz

/// libFuzzer's entry point: `SLD_FUZZ_TARGET` names the parser (FuzzTarget), and
/// `SLD_FUZZ_FIXTURES` the folder holding tiny-tied/ (default: the repository's).
nonisolated(unsafe) let setup: (FuzzTarget, FuzzContext) = {
  let environment = ProcessInfo.processInfo.environment
  guard let name = environment["SLD_FUZZ_TARGET"], let target = FuzzTarget(rawValue: name) else {
    FileHandle.standardError.write(
      Data(
        ("set SLD_FUZZ_TARGET to one of: " + FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
          + "\n").utf8))
    exit(2)
  }
  let fixtures = URL(fileURLWithPath: environment["SLD_FUZZ_FIXTURES"] ?? "Tests/LoRAModelTests/Fixtures")
  do {
    let context = try FuzzContext(fixtures: fixtures)
    // `SLD_FUZZ_WRITE_SEEDS=DIR`: write the generated seeds into DIR (scripts/fuzz's corpus) and stop.
    if let folder = environment["SLD_FUZZ_WRITE_SEEDS"] {
      for (i, seed) in try context.generatedSeeds(target).enumerated() {
        try Data(seed).write(to: URL(fileURLWithPath: folder).appendingPathComponent("generated-\(i)"))
      }
      exit(0)
    }
    return (target, context)
  } catch {
    FileHandle.standardError.write(Data("cannot set up the fuzz context: \(error)\n".utf8))
    exit(2)
  }
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  setup.0.run(Array(UnsafeBufferPointer(start: data, count: size)), setup.1)
  return 0
}

/// libFuzzer's driver (its own main is not the one linked: this file's top level is).
@_silgen_name("LLVMFuzzerRunDriver")
func runDriver(
  _ argc: UnsafeMutablePointer<CInt>,
  _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
  _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

_ = setup
var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(runDriver(&argc, &argv, { fuzzOneInput($0, $1) }))
