// swift-tools-version:6.0
import Foundation
import PackageDescription

let package = Package(
  name: "swift-lora-dist",
  platforms: [.macOS(.v14)],
  products: [
    .executable(name: "swift-lora-dist", targets: ["swift-lora-dist"])
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.8.0"),
    .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
  ],
  targets: [
    // System libraries: one module map and shim header each, found through pkg-config.
    .systemLibrary(
      name: "CBLAS", pkgConfig: "openblas",
      providers: [.apt(["libopenblas-dev", "pkg-config"])]),
    .systemLibrary(
      name: "CMPI", pkgConfig: "ompi-c",
      providers: [.apt(["libopenmpi-dev", "openmpi-bin", "pkg-config"])]),
    .systemLibrary(
      name: "CLZ4", pkgConfig: "liblz4",
      providers: [.apt(["liblz4-dev", "pkg-config"])]),
    // oneDNN (bf16 matrix products); Debian ships no pkg-config file, so the module map
    // links dnnl and its OpenMP runtime (gomp) by name.
    .systemLibrary(name: "CDNNL", providers: [.apt(["libdnnl-dev"])]),

    // glibc's libmvec vector exp behind a run-time CPU check (AVX-512, AVX2); one C file.
    .target(name: "CVectorMath", linkerSettings: [.linkedLibrary("mvec")]),
    // Thread placement (pthread_setaffinity_np, sched affinity); one C file.
    .target(name: "CAffinity"),
    // Each kernel-running thread's pool of worker threads (spin, then sleep; pinnable); one C file.
    .target(name: "CKernelThreads"),
    // Flat Float buffers, the GEMM wrappers (OpenBLAS fp32, oneDNN bf16) and every op's
    // forward and backward.
    .target(name: "LoRAKernels", dependencies: ["CBLAS", "CDNNL", "CVectorMath", "CKernelThreads"]),
    // Model files (GGUF, safetensors, Hugging Face folders) and tokenizers.
    .target(name: "LoRAFormats", dependencies: ["LoRAKernels"]),
    // Llama-family configuration, frozen weights and the forward pass.
    .target(name: "LoRAModel", dependencies: ["LoRAKernels", "LoRAFormats"]),
    // Data, batching, optimizer, schedules and the training loop.
    .target(
      name: "LoRATraining",
      dependencies: ["LoRAKernels", "LoRAFormats", "LoRAModel", "LoRACheckpoint", "LoRAComm"]),
    // Communicators: MPI, local thread-ranks, and the checks every backend must pass.
    .target(name: "LoRAComm", dependencies: ["LoRAKernels", "CMPI", "CAffinity"]),
    // The LZ4 checkpoint format, base fingerprints, and the ways out: PEFT, GGUF LoRA, merged models.
    .target(
      name: "LoRACheckpoint",
      dependencies: [
        "CLZ4", "LoRAKernels", "LoRAFormats", "LoRAModel", .product(name: "Crypto", package: "swift-crypto"),
      ]),

    // YAML settings files (job files, `train --config`) decoded through Yams' Codable
    // support, with errors that name the file, line and key path.
    .target(name: "LoRAYAML", dependencies: [.product(name: "Yams", package: "Yams")]),

    // Job files and the plan: ranks -> rank groups -> adapters, with estimated times.
    .target(
      name: "LoRACoordinator",
      dependencies: ["LoRATraining", "LoRAModel", "LoRAYAML"]),

    // Many adapters on one base in one process: the adapter store, merged task switching,
    // mixed-adapter decoding with continuous batching, routing.
    // The run as a library: plans, the one training loop's driver for single and fused
    // adapters, the job's groups and queue, events and outputs. The CLI renders its events.
    .target(
      name: "LoRARun",
      dependencies: [
        "LoRATraining", "LoRACoordinator", "LoRACheckpoint", "LoRAComm", "LoRAModel", "LoRAFormats",
        "LoRAKernels",
        "LoRAServe",
      ]),
    .target(
      name: "LoRAServe",
      dependencies: ["LoRAKernels", "LoRAFormats", "LoRAModel", "LoRACheckpoint"]),

    // OpenAI's API without HTTP: request bodies, errors in OpenAI's shape, and the checks
    // that turn bodies into the engine's requests (fuzzed without a server).
    .target(name: "LoRAOpenAI", dependencies: ["LoRAServe", "LoRAFormats"]),

    // The OpenAI-compatible HTTP server over the serving engine: responses, routes,
    // server-sent events, Prometheus metrics.
    .target(
      name: "LoRAServeHTTP",
      dependencies: [
        "LoRAOpenAI", "LoRAServe", "LoRAFormats", .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "Logging", package: "swift-log"), .product(name: "NIOCore", package: "swift-nio"),
      ]),

    .executableTarget(
      name: "swift-lora-dist",
      dependencies: [
        "LoRARun",
        "LoRAKernels", "LoRAComm", "LoRACheckpoint", "LoRAFormats", "LoRAModel", "LoRATraining",
        "LoRACoordinator", "LoRAYAML", "LoRAServe", "LoRAServeHTTP",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]),

    // Every parser of untrusted input as a fuzz target (scripts/fuzz); the corpora replay in LoRAFuzzTests.
    .target(
      name: "LoRAFuzz",
      dependencies: [
        "LoRAFormats", "LoRACheckpoint", "LoRAModel", "LoRATraining", "LoRACoordinator", "LoRAKernels",
        "LoRAOpenAI",
      ]),

    .testTarget(name: "LoRAKernelsTests", dependencies: ["LoRAKernels", "CKernelThreads"]),
    .testTarget(name: "LoRAFuzzTests", dependencies: ["LoRAFuzz"], resources: [.copy("Corpus")]),
    .testTarget(name: "LoRACommTests", dependencies: ["LoRAComm"]),
    .testTarget(
      name: "LoRATrainingTests", dependencies: ["LoRATraining", "LoRAFormats", "LoRAModel", "LoRAComm"],
      resources: [.copy("Fixtures")]),
    .testTarget(
      name: "LoRARunTests",
      dependencies: ["LoRARun", "LoRATraining", "LoRACoordinator", "LoRAComm", "LoRACheckpoint"],
      resources: [.copy("Fixtures")]),
    .testTarget(
      name: "LoRAFormatsTests", dependencies: ["LoRAFormats"], resources: [.copy("Fixtures")]),
    .testTarget(
      name: "LoRAModelTests", dependencies: ["LoRAModel", "LoRAFormats"], resources: [.copy("Fixtures")]),
    .testTarget(
      name: "LoRACheckpointTests",
      dependencies: ["LoRACheckpoint", "LoRAModel", "LoRAFormats", "LoRAKernels"],
      resources: [.copy("Fixtures")]),
    .testTarget(
      name: "LoRAServeTests",
      dependencies: ["LoRAServe", "LoRAModel", "LoRACheckpoint", "LoRAFormats", "LoRAKernels"]),
    .testTarget(
      name: "LoRAServeHTTPTests",
      dependencies: [
        "LoRAServeHTTP", "LoRAOpenAI", "LoRAServe", "LoRAFormats",
        .product(name: "Hummingbird", package: "hummingbird"),
      ]),
    .testTarget(name: "LoRACoordinatorTests", dependencies: ["LoRACoordinator", "LoRAModel"]),
    .testTarget(
      name: "CLITests",
      dependencies: [
        "swift-lora-dist", "LoRARun", "LoRAComm", "LoRAFormats", "LoRACheckpoint", "LoRACoordinator",
        "LoRATraining",
        "LoRAServe",
        "LoRAModel", "LoRAKernels", "LoRAServeHTTP",
      ]),
  ]
)

// The libFuzzer harness (scripts/fuzz): built only with SLD_FUZZ=1 and -sanitize=fuzzer,
// whose runtime supplies main.
if ProcessInfo.processInfo.environment["SLD_FUZZ"] == "1" {
  package.targets.append(
    .executableTarget(name: "sld-fuzz", dependencies: ["LoRAFuzz"], path: "Fuzz/sld-fuzz"))
  package.products.append(.executable(name: "sld-fuzz", targets: ["sld-fuzz"]))
}
