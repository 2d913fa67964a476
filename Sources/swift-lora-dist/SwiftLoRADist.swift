import ArgumentParser
import LoRAKernels

/// The `swift-lora-dist` command: the only place that talks to the user.
@main
struct SwiftLoRADist: ParsableCommand {
  static let version = "0.1.0"

  static let configuration = CommandConfiguration(
    commandName: "swift-lora-dist",
    abstract: "Fine-tune many LoRA adapters at once on one frozen base model, on CPUs, over MPI.",
    discussion: """
      Runs as one process, or as one rank of an MPI job under mpirun, srun or \
      another PMI/PMIx launcher.

      Examples:
        swift-lora-dist doctor --model model.gguf
        mpirun -np 2 swift-lora-dist doctor --model model.gguf
      """,
    version: version,
    subcommands: [
      Doctor.self, Inspect.self, Generate.self, Train.self, Eval.self, Serve.self, Route.self, Bench.self,
      BenchServe.self, Export.self, Import.self, Merge.self, Plan.self, Report.self, Analyze.self,
      Resize.self, Combine.self,
    ]
  )

  /// Picks OpenBLAS's fast kernel where it failed to (see `BLAS.selectFasterCoreIfNeeded`),
  /// then parses the command line and runs the command.
  static func main() {
    BLAS.selectFasterCoreIfNeeded()
    main(nil)
  }
}
