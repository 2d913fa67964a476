import ArgumentParser

/// The `swift-lora-dist` command: the only place that talks to the user.
@main
struct SwiftLoRADist: ParsableCommand {
  static let version = "0.1.0"

  static let configuration = CommandConfiguration(
    commandName: "swift-lora-dist",
    abstract: "Fine-tune many LoRA adapters at once on one frozen base model, on CPUs, over MPI.",
    discussion: """
      Run it alone for one process, or under an MPI launcher for many:

        swift-lora-dist doctor --model ~/.cache/swift-lora-dist/SmolLM2-135M-Instruct.Q4_1.gguf
        mpirun -np 2 swift-lora-dist doctor --model model.gguf
      """,
    version: version,
    subcommands: [Doctor.self]
  )
}
