import CDNNL
import Foundation

/// bf16 × bf16 → fp32 matrix products of any shape, through oneDNN's matmul with runtime
/// dimensions and strides (a C-facing file). For attention, whose products
/// change shape with every block of rows and every sequence length: one primitive serves
/// every shape of a (transposes, alpha, beta) combination, so nothing is created per shape.
///
/// Single-threaded: callers run it from their own threads (attention spreads its sequences
/// and heads over `Parallel`). State is the calling thread's `DNNLContext`: the primitives
/// made so far, and memory objects for the shapes seen so far (oneDNN's memory objects carry
/// their dimensions, so each operand shape gets one, made on its first use and kept:
/// steady-state calls allocate nothing).
enum BF16GEMM {
  /// `c = alpha · op(a) · op(b) + beta · c`, accumulated in fp32.
  ///
  /// - c: `[M, N]` fp32, row stride `ldc`; a: `[M, K]` bf16 (`[K, M]` with `.transposed`),
  ///   row stride `lda`; b: `[K, N]` bf16 (`[N, K]` with `.transposed`), row stride `ldb`.
  /// - Throws: `BF16Error.dnnl` when oneDNN cannot make or run the product (a CPU without
  ///   AVX-512).
  static func multiply(
    c: UnsafeMutablePointer<Float>, ldc: Int, a: UnsafePointer<UInt16>, _ opA: Transpose, lda: Int,
    b: UnsafePointer<UInt16>, _ opB: Transpose, ldb: Int, m: Int, n: Int, k: Int, alpha: Float = 1,
    beta: Float = 0
  ) throws(BF16Error) {
    guard m > 0 && n > 0 && k > 0 else {
      precondition(k > 0 || beta == 0 || m == 0 || n == 0, "BF16GEMM with k = 0 and beta ≠ 0")
      for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) }
      return
    }
    let key = GEMMKey(
      transposedA: opA == .transposed, transposedB: opB == .transposed, alpha: alpha, beta: beta)
    omp_set_num_threads(1)
    let context = try DNNLContext.current(key.description)
    let product = try context.product(for: key)
    // a [M, K]: (i, j) at i·lda + j, or j·lda + i when stored transposed; likewise b [K, N].
    let source = try context.memory(
      MemoryKey(
        rows: m, cols: k, rowStride: opA == .none ? lda : 1, colStride: opA == .none ? 1 : lda, bf16: true),
      key)
    let weights = try context.memory(
      MemoryKey(
        rows: k, cols: n, rowStride: opB == .none ? ldb : 1, colStride: opB == .none ? 1 : ldb, bf16: true),
      key)
    let destination = try context.memory(
      MemoryKey(rows: m, cols: n, rowStride: ldc, colStride: 1, bf16: false), key)
    let point = "dnnl_memory_set_data_handle"
    try check(dnnl_memory_set_data_handle(source, UnsafeMutableRawPointer(mutating: a)), point, key)
    try check(dnnl_memory_set_data_handle(weights, UnsafeMutableRawPointer(mutating: b)), point, key)
    try check(dnnl_memory_set_data_handle(destination, c), point, key)
    product.arguments[0] = dnnl_exec_arg_t(arg: DNNL_ARG_SRC_0, memory: source)
    product.arguments[1] = dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS_0, memory: weights)
    product.arguments[2] = dnnl_exec_arg_t(arg: DNNL_ARG_DST_0, memory: destination)
    try check(
      dnnl_primitive_execute(product.primitive, context.stream, 3, product.arguments),
      "dnnl_primitive_execute",
      key)
    try check(dnnl_stream_wait(context.stream), "dnnl_stream_wait", key)
  }

  /// oneDNN's kernel for each transpose combination attention uses, on the calling thread,
  /// e.g. "gemm:jit"; "ref:any" (its reference loops, orders of magnitude slower) means bf16
  /// products are no use here.
  static func implementations() throws(BF16Error) -> [String] {
    let keys = [(false, true, 1), (false, false, 1), (true, false, 2)].map {
      GEMMKey(transposedA: $0.0, transposedB: $0.1, alpha: 0.5, beta: Float($0.2 - 1))
    }
    let context = try DNNLContext.current(keys[0].description)
    var names: [String] = []
    for key in keys { names.append(try context.product(for: key).implementation) }
    return names
  }

  /// Whether oneDNN runs these products on a real kernel here (not its reference loops), so
  /// that attention gains from them; probed once.
  static let accelerated: Bool = {
    guard let names = try? implementations() else { return false }
    return names.allSatisfy { !$0.hasPrefix("ref") }
  }()
}

/// What one primitive is made for: shapes and strides are given at run time.
struct GEMMKey: Hashable {
  var transposedA: Bool
  var transposedB: Bool
  var alpha: UInt32
  /// The bits of beta; 0 (either sign) means no sum post-op.
  var beta: UInt32

  init(transposedA: Bool, transposedB: Bool, alpha: Float, beta: Float) {
    (self.transposedA, self.transposedB) = (transposedA, transposedB)
    self.alpha = alpha.bitPattern
    self.beta = beta == 0 ? 0 : beta.bitPattern
  }

  var description: String {
    let sum = beta == 0 ? "" : " + \(Float(bitPattern: beta)) · c"
    return "c = \(Float(bitPattern: alpha)) · a\(transposedA ? "ᵀ" : "") · b\(transposedB ? "ᵀ" : "")\(sum) "
      + "(bf16, runtime shapes)"
  }
}

/// A 2-D operand's shape and strides, in elements.
struct MemoryKey: Hashable {
  var rows, cols, rowStride, colStride: Int
  var bf16: Bool
}

private func check(_ status: dnnl_status_t, _ call: String, _ key: GEMMKey) throws(BF16Error) {
  try dnnlCheck(status, call, key.description)
}

/// One matmul primitive whose dimensions and strides are all given at run time.
final class GEMMProduct {
  var primitive: dnnl_primitive_t?
  var implementation = "unknown"
  let arguments = UnsafeMutablePointer<dnnl_exec_arg_t>.allocate(capacity: 3)

  static func make(_ key: GEMMKey, engine: dnnl_engine_t?) throws(BF16Error) -> GEMMProduct {
    let product = GEMMProduct()
    let any = Int64.min  // DNNL_RUNTIME_DIM_VAL (INT64_MIN), a macro Swift does not import
    var source = dnnl_memory_desc_t()
    var weights = dnnl_memory_desc_t()
    var destination = dnnl_memory_desc_t()
    let call = "dnnl_memory_desc_init_by_strides"
    // Row strides are given at run time; which stride is 1 (the transposes) is fixed here, or
    // oneDNN falls back to its reference kernel.
    let (a, b) = (key.transposedA, key.transposedB)
    try check(
      dnnl_memory_desc_init_by_strides(&source, 2, [any, any], dnnl_bf16, a ? [1, any] : [any, 1]), call, key)
    try check(
      dnnl_memory_desc_init_by_strides(&weights, 2, [any, any], dnnl_bf16, b ? [1, any] : [any, 1]), call, key
    )
    try check(dnnl_memory_desc_init_by_strides(&destination, 2, [any, any], dnnl_f32, [any, 1]), call, key)
    var description = dnnl_matmul_desc_t()
    try check(
      dnnl_matmul_desc_init(&description, &source, &weights, nil, &destination), "dnnl_matmul_desc_init", key)
    (product.primitive, product.implementation) = try dnnlMatMulPrimitive(
      &description, alpha: Float(bitPattern: key.alpha), beta: Float(bitPattern: key.beta), engine: engine,
      key.description)
    return product
  }

  deinit {
    if let primitive { dnnl_primitive_destroy(primitive) }
    arguments.deallocate()
  }
}
