/// One copy of the frozen base per NUMA domain (`--numa-copies`): the ranks bound within a
/// domain share a copy that the first of them writes, so its pages (first touch) and their
/// reads stay in the domain's memory, instead of every rank of a node reading one copy
/// across the interconnect. Ranks not bound within one domain share one copy, as without it.
public enum NUMACopies {
  /// The communicator whose node-shared buffers hold the base: `comm` split by the NUMA
  /// domain of the CPUs the calling thread may run on (`cpus`; ranks that span several
  /// domains form one more group), or `comm` itself without `perDomain` or on a machine of
  /// one domain; and a note for the user. Collective over `comm` when it splits.
  public static func sharing(
    _ comm: any Communicator, perDomain: Bool, topology: CPUTopology, cpus: [Int]
  ) throws -> (communicator: any Communicator, note: String?) {
    guard perDomain else { return (comm, nil) }
    guard topology.numaDomains.count > 1 else { return (comm, note(topology: topology)) }
    let domain = topology.domain(of: cpus)
    let split = try comm.split(colour: domain ?? topology.numaDomains.count, key: comm.rank)
    return (
      split,
      "--numa-copies: one copy of the base per NUMA domain (\(topology.numaDomains.count) domains); rank \(comm.rank) "
        + (domain.map { "uses domain \($0)'s" }
          ?? "is not bound within one domain and shares the unbound ranks'")
    )
  }
}

extension NUMACopies {
  /// What `--numa-copies` does on `topology`, for the user.
  public static func note(topology: CPUTopology) -> String {
    topology.numaDomains.count > 1
      ? "--numa-copies: one copy of the base per NUMA domain (\(topology.numaDomains.count) domains), shared by the ranks bound in it"
      : "--numa-copies: this machine has 1 NUMA domain, so one copy of the base serves every rank (nothing to place)"
  }
}

extension CPUTopology {
  /// The index in `numaDomains` of the domain holding every CPU of `cpus`; nil when they
  /// span several (or none is known).
  public func domain(of cpus: [Int]) -> Int? {
    guard !cpus.isEmpty else { return nil }
    return numaDomains.firstIndex { domain in cpus.allSatisfy(domain.contains) }
  }
}
