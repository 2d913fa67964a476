import CDNNL
import Foundation

/// Matrix products with a frozen bf16 operand through oneDNN's matmul primitive (one of the
/// C-facing files for oneDNN, with `BF16GEMM` and `DNNLContext`). fp32 activations are rounded to bf16 into a scratch buffer
/// reused between calls; products accumulate in fp32 and land in fp32.
///
/// The two products of a frozen linear layer whose weight W is `[N, K]` (out × in, the layout
/// of the fp32 weights):
/// - forward, `y[M, N] = x[M, K] · Wᵀ`: `multiply(into: y, x, w, transposeB: .transposed)`;
/// - input gradient, `dx[M, K] (+)= dy[M, N] · W`: `multiply(into: dx, dy, w, beta: 1)`.
///
/// State is per calling thread, since each thread may be a rank: a oneDNN engine, a stream, the
/// scratch buffer and the primitives made so far, one per (M, N, K, transpose, beta, threads).
/// A shape's first call creates its primitive; later calls re-point its memory objects at the
/// operands and allocate nothing. oneDNN runs on OpenMP (libgomp) threads started from the
/// calling thread; `threads` is applied to the calling thread before every call, so ranks
/// running side by side do not oversubscribe the cores.
public enum BF16MatMul {
  /// `c = a · op(b) + beta · c`, with `a` rounded to bf16 and fp32 accumulation.
  ///
  /// - c: `[M, N]`; a: `[M, K]`; b: `[K, N]` (or `[N, K]` with `.transposed`). A tensor is a
  ///   matrix whose columns are its last dimension, as in `GEMM`. `beta: 1` accumulates into
  ///   `c` (oneDNN's sum post-op), as backward passes do.
  /// - Throws: `BF16Error.dnnl` when oneDNN cannot make or run the product (e.g. a CPU
  ///   without AVX-512, where oneDNN 2.x has no bf16 matmul).
  public static func multiply(
    into c: Tensor, _ a: Tensor, _ b: BF16Tensor, transposeB opB: Transpose = .none, beta: Float = 0,
    threads: Int? = nil
  ) throws(BF16Error) {
    let (m, k) = matrixShape(a.shape)
    let (bRows, bCols) = matrixShape(b.shape)
    let (cRows, cCols) = matrixShape(c.shape)
    let n = opB == .none ? bCols : bRows
    precondition(
      (opB == .none ? bRows : bCols) == k && cRows == m && cCols == n,
      "BF16MatMul shapes do not agree: c\(c.shape) = a\(a.shape) · b\(b.shape)\(opB == .none ? "" : "ᵀ")")
    guard m > 0 && n > 0 else { return }
    guard k > 0 else {
      c.withUnsafeMutableBufferPointer { for i in $0.indices { $0[i] = beta == 0 ? 0 : beta * $0[i] } }
      return
    }
    let key = DNNLProductKey(
      m: m, n: n, k: k, transposed: opB == .transposed, beta: beta, threads: threads ?? Self.threads)
    omp_set_num_threads(Int32(key.threads))
    let context = try DNNLContext.current(key.description)
    let product = try context.product(for: key)
    let source = context.scratch(count: m * k)
    BFloat16.convert(source, a.base, count: m * k)
    try product.run(
      on: context.stream, source: source, weights: b.base, destination: c.base, key: key)
  }

  /// Threads one product runs on: oneDNN's OpenMP team, started from the calling thread.
  /// Follows `BLAS.threads` (as `--threads` sets it, per rank) until set; values are
  /// clamped to 1…`Parallel.maxWidth`. Set it only while no product runs.
  public static var threads: Int {
    get { threadSetting.value ?? BLAS.threads }
    set { threadSetting.value = max(1, min(newValue, Parallel.maxWidth)) }
  }

  private static let threadSetting = UncheckedBox<Int?>(nil)

  /// Whether oneDNN has bf16 products here at all: oneDNN 2.x needs AVX-512 (AVX512F, BW, VL,
  /// DQ) and emulates bf16 arithmetic on it ("gemm:jit") when the CPU lacks AVX512_BF16; on
  /// AVX2 and older every product throws `unimplemented`.
  public static var available: Bool {
    let isa = dnnl_get_effective_cpu_isa().rawValue
    return isa & dnnl_cpu_isa_avx512_core.rawValue == dnnl_cpu_isa_avx512_core.rawValue
  }

  /// Whether oneDNN runs bf16 products on native instructions (AVX512_BF16, or AMX), rather
  /// than emulating them on AVX-512 or having none (AVX2 and older).
  public static var nativeBF16: Bool {
    let isa = dnnl_get_effective_cpu_isa().rawValue
    return isa & dnnl_cpu_isa_avx512_core_bf16.rawValue == dnnl_cpu_isa_avx512_core_bf16.rawValue
  }

  /// The widest instruction set oneDNN dispatches to here, e.g. "avx512_core_bf16"
  /// (`DNNL_MAX_CPU_ISA` can lower it).
  public static var instructionSet: String {
    switch dnnl_get_effective_cpu_isa() {
    case dnnl_cpu_isa_sse41: return "sse41"
    case dnnl_cpu_isa_avx: return "avx"
    case dnnl_cpu_isa_avx2: return "avx2"
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni"
    case dnnl_cpu_isa_avx512_mic, dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic"
    case dnnl_cpu_isa_avx512_core: return "avx512_core"
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni"
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16"
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx"
    case let other: return "isa 0x\(String(other.rawValue, radix: 16))"
    }
  }

  /// oneDNN's version, e.g. "2.6.3".
  public static var libraryVersion: String {
    guard let version = dnnl_version()?.pointee else { return "unknown" }
    return "\(version.major).\(version.minor).\(version.patch)"
  }

  /// oneDNN's name for the kernel it chose for this product on the calling thread's
  /// settings, e.g. "brg:avx512_core_bf16" (creates and caches the primitive).
  public static func implementation(
    m: Int, n: Int, k: Int, transposeB opB: Transpose = .none, beta: Float = 0, threads: Int? = nil
  ) throws(BF16Error) -> String {
    let key = DNNLProductKey(
      m: m, n: n, k: k, transposed: opB == .transposed, beta: beta, threads: threads ?? Self.threads)
    omp_set_num_threads(Int32(key.threads))
    return try DNNLContext.current(key.description).product(for: key).implementation
  }

  /// Primitives cached for the calling thread.
  package static var cachedProducts: Int {
    DNNLContext.existing?.products.count ?? 0
  }

  private static func matrixShape(_ shape: [Int]) -> (rows: Int, cols: Int) {
    guard let cols = shape.last else { return (1, 1) }
    return (shape.dropLast().reduce(1, *), cols)
  }
}

/// What a primitive is made for: oneDNN fixes shapes, post-ops and (for OpenMP) the thread
/// count when it creates one.
struct DNNLProductKey: Hashable {
  var m: Int
  var n: Int
  var k: Int
  var transposed: Bool
  /// The bits of beta; 0 (either sign) means no sum post-op.
  var beta: UInt32
  var threads: Int

  init(m: Int, n: Int, k: Int, transposed: Bool, beta: Float, threads: Int) {
    (self.m, self.n, self.k, self.transposed, self.threads) = (m, n, k, transposed, threads)
    self.beta = beta == 0 ? 0 : beta.bitPattern
  }

  /// The product in words, for errors: "c[64, 1536] = a[64, 576] · b[1536, 576]ᵀ".
  var description: String {
    let b = transposed ? "b[\(n), \(k)]ᵀ" : "b[\(k), \(n)]"
    let sum = beta == 0 ? "" : " + \(Float(bitPattern: beta)) · c"
    return "c[\(m), \(n)] = a[\(m), \(k)] · \(b)\(sum) (bf16, \(threads) thread\(threads == 1 ? "" : "s"))"
  }
}

/// Throws `BF16Error.dnnl` for `status` unless it is success, naming the product.
private func check(_ status: dnnl_status_t, _ call: String, _ key: DNNLProductKey) throws(BF16Error) {
  try dnnlCheck(status, call, key.description)
}

/// One matmul primitive with its three memory objects (plain row-major layouts) and the
/// argument list that names them; the objects are re-pointed at the operands on each run.
final class DNNLProduct {
  var primitive: dnnl_primitive_t?
  var source: dnnl_memory_t?
  var weights: dnnl_memory_t?
  var destination: dnnl_memory_t?
  var implementation = "unknown"
  let arguments = UnsafeMutablePointer<dnnl_exec_arg_t>.allocate(capacity: 3)

  /// Creates the primitive for `key`: source `[M, K]` bf16, weights `[K, N]` bf16 (strides of
  /// a `[N, K]` matrix read transposed when `key.transposed`), destination `[M, N]` fp32.
  static func make(_ key: DNNLProductKey, engine: dnnl_engine_t?) throws(BF16Error) -> DNNLProduct {
    let product = DNNLProduct()  // frees what was made if a later step throws
    let (m, n, k) = (Int64(key.m), Int64(key.n), Int64(key.k))
    var sourceDescription = dnnl_memory_desc_t()
    var weightsDescription = dnnl_memory_desc_t()
    var destinationDescription = dnnl_memory_desc_t()
    let call = "dnnl_memory_desc_init_by_strides"
    try check(dnnl_memory_desc_init_by_strides(&sourceDescription, 2, [m, k], dnnl_bf16, [k, 1]), call, key)
    try check(
      dnnl_memory_desc_init_by_strides(
        &weightsDescription, 2, [k, n], dnnl_bf16, key.transposed ? [1, k] : [n, 1]), call, key)
    try check(
      dnnl_memory_desc_init_by_strides(&destinationDescription, 2, [m, n], dnnl_f32, [n, 1]), call, key)
    var description = dnnl_matmul_desc_t()
    try check(
      dnnl_matmul_desc_init(
        &description, &sourceDescription, &weightsDescription, nil, &destinationDescription),
      "dnnl_matmul_desc_init", key)

    // dst = a · b (+ beta · dst, in place).
    (product.primitive, product.implementation) = try dnnlMatMulPrimitive(
      &description, alpha: 1, beta: Float(bitPattern: key.beta), engine: engine, key.description)

    let create = "dnnl_memory_create"
    try check(dnnl_memory_create(&product.source, &sourceDescription, engine, nil), create, key)
    try check(dnnl_memory_create(&product.weights, &weightsDescription, engine, nil), create, key)
    try check(dnnl_memory_create(&product.destination, &destinationDescription, engine, nil), create, key)
    product.arguments[0] = dnnl_exec_arg_t(arg: DNNL_ARG_SRC_0, memory: product.source)
    product.arguments[1] = dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS_0, memory: product.weights)
    product.arguments[2] = dnnl_exec_arg_t(arg: DNNL_ARG_DST_0, memory: product.destination)
    return product
  }

  /// Runs the product on `stream` over the given buffers and waits for it.
  func run(
    on stream: dnnl_stream_t?, source sourceData: UnsafeMutablePointer<UInt16>,
    weights weightsData: UnsafeMutablePointer<UInt16>,
    destination destinationData: UnsafeMutablePointer<Float>,
    key: DNNLProductKey
  ) throws(BF16Error) {
    let point = "dnnl_memory_set_data_handle"
    try check(dnnl_memory_set_data_handle(source, sourceData), point, key)
    try check(dnnl_memory_set_data_handle(weights, weightsData), point, key)
    try check(dnnl_memory_set_data_handle(destination, destinationData), point, key)
    try check(dnnl_primitive_execute(primitive, stream, 3, arguments), "dnnl_primitive_execute", key)
    try check(dnnl_stream_wait(stream), "dnnl_stream_wait", key)
  }

  deinit {
    for memory in [source, weights, destination] { if let memory { dnnl_memory_destroy(memory) } }
    if let primitive { dnnl_primitive_destroy(primitive) }
    arguments.deallocate()
  }
}
