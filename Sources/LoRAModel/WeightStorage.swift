import LoRAKernels

/// Where the converted weights live (Float32 slots; a bf16 base packs two elements per
/// slot). By default each process allocates its own;
/// ranks on one node can instead share one copy (an MPI shared-memory window): `allocate`
/// returns the buffer and whether this process fills it, and `ready` returns once the
/// filling process has finished (a barrier among the sharers).
public struct WeightStorage {
  public var allocate: (Int) throws -> (tensor: Tensor, fill: Bool)
  public var ready: () throws -> Void

  public init(
    allocate: @escaping (Int) throws -> (tensor: Tensor, fill: Bool), ready: @escaping () throws -> Void
  ) {
    self.allocate = allocate
    self.ready = ready
  }
}
