import CDNNL
import Foundation

/// Throws `BF16Error.dnnl` naming `call`, oneDNN's status and the product unless `status` is
/// success.
func dnnlCheck(_ status: dnnl_status_t, _ call: String, _ product: @autoclosure () -> String)
  throws(BF16Error)
{
  guard status != dnnl_success else { return }
  let name = dnnl_status2str(status).map { String(cString: $0) } ?? "status \(status.rawValue)"
  throw .dnnl(call: call, status: name, product: product())
}

/// A matmul primitive for `description`, with the output scale `alpha` (1: none) and the sum
/// post-op `beta` (0: none; `c = alpha · a · b + beta · c`), and oneDNN's name for the
/// kernel it chose (e.g. "brg:avx512_core_bf16").
func dnnlMatMulPrimitive(
  _ description: inout dnnl_matmul_desc_t, alpha: Float, beta: Float, engine: dnnl_engine_t?,
  _ product: @autoclosure () -> String
) throws(BF16Error) -> (primitive: dnnl_primitive_t?, implementation: String) {
  var attributes: dnnl_primitive_attr_t?
  try dnnlCheck(dnnl_primitive_attr_create(&attributes), "dnnl_primitive_attr_create", product())
  defer { dnnl_primitive_attr_destroy(attributes) }
  if alpha != 1 {
    var scale = alpha
    try dnnlCheck(
      dnnl_primitive_attr_set_output_scales(attributes, 1, 0, &scale),
      "dnnl_primitive_attr_set_output_scales",
      product())
  }
  if beta != 0 {
    var postOps: dnnl_post_ops_t?
    try dnnlCheck(dnnl_post_ops_create(&postOps), "dnnl_post_ops_create", product())
    defer { dnnl_post_ops_destroy(postOps) }
    try dnnlCheck(dnnl_post_ops_append_sum(postOps, beta), "dnnl_post_ops_append_sum", product())
    try dnnlCheck(
      dnnl_primitive_attr_set_post_ops(attributes, postOps), "dnnl_primitive_attr_set_post_ops", product())
  }
  var primitiveDescription: dnnl_primitive_desc_t?
  try dnnlCheck(
    dnnl_primitive_desc_create(&primitiveDescription, &description, attributes, engine, nil),
    "dnnl_primitive_desc_create", product())
  defer { dnnl_primitive_desc_destroy(primitiveDescription) }
  var name: UnsafePointer<CChar>?
  var implementation = "unknown"
  if dnnl_primitive_desc_query(primitiveDescription, dnnl_query_impl_info_str, 0, &name) == dnnl_success,
    let name
  {
    implementation = String(cString: name)
  }
  var primitive: dnnl_primitive_t?
  try dnnlCheck(dnnl_primitive_create(&primitive, primitiveDescription), "dnnl_primitive_create", product())
  return (primitive, implementation)
}

/// The thread-specific slot that holds each thread's `DNNLContext` (retained), released when
/// the thread exits.
private let contextKey: pthread_key_t = {
  var key = pthread_key_t()
  let status = pthread_key_create(&key) { pointer in
    if let pointer { Unmanaged<DNNLContext>.fromOpaque(pointer).release() }
  }
  precondition(status == 0, "pthread_key_create failed with \(status)")
  return key
}()

/// One thread's oneDNN objects: engine and stream; for
/// `BF16MatMul` its fixed-shape primitives and bf16 scratch; for `BF16GEMM` its runtime-shape
/// primitives and the memory objects of the operand shapes seen so far.
final class DNNLContext {
  /// Fixed-shape primitives kept per thread; a run with more shapes (many sequence lengths)
  /// starts over.
  static let capacity = 64
  /// Memory objects kept per thread (a few hundred bytes each); past this many they start over.
  static let memoryCapacity = 8192

  var engine: dnnl_engine_t?
  var stream: dnnl_stream_t?
  var products: [DNNLProductKey: DNNLProduct] = [:]
  var runtimeProducts: [GEMMKey: GEMMProduct] = [:]
  private var memories: [MemoryKey: dnnl_memory_t] = [:]
  private var scratchBase: UnsafeMutablePointer<UInt16>?
  private var scratchCapacity = 0

  /// The calling thread's context if it has made one.
  static var existing: DNNLContext? {
    pthread_getspecific(contextKey).map { Unmanaged<DNNLContext>.fromOpaque($0).takeUnretainedValue() }
  }

  /// The calling thread's context, made on its first product (`product` names it in errors).
  static func current(_ product: @autoclosure () -> String) throws(BF16Error) -> DNNLContext {
    if let existing { return existing }
    let context = DNNLContext()
    try dnnlCheck(dnnl_engine_create(&context.engine, dnnl_cpu, 0), "dnnl_engine_create", product())
    try dnnlCheck(
      dnnl_stream_create(&context.stream, context.engine, dnnl_stream_default_flags.rawValue),
      "dnnl_stream_create", product())
    pthread_setspecific(contextKey, Unmanaged.passRetained(context).toOpaque())
    return context
  }

  /// The fixed-shape primitive for `key`, made on first use.
  func product(for key: DNNLProductKey) throws(BF16Error) -> DNNLProduct {
    if let product = products[key] { return product }
    if products.count >= Self.capacity { products.removeAll(keepingCapacity: true) }
    let product = try DNNLProduct.make(key, engine: engine)
    products[key] = product
    return product
  }

  /// The runtime-shape primitive for `key`, made on first use.
  func product(for key: GEMMKey) throws(BF16Error) -> GEMMProduct {
    if let product = runtimeProducts[key] { return product }
    let product = try GEMMProduct.make(key, engine: engine)
    runtimeProducts[key] = product
    return product
  }

  /// A memory object of this shape, made on first use (its data pointer is set by the caller).
  func memory(_ shape: MemoryKey, _ key: GEMMKey) throws(BF16Error) -> dnnl_memory_t? {
    if let memory = memories[shape] { return memory }
    if memories.count >= Self.memoryCapacity { clearMemories() }
    var description = dnnl_memory_desc_t()
    try dnnlCheck(
      dnnl_memory_desc_init_by_strides(
        &description, 2, [Int64(shape.rows), Int64(shape.cols)], shape.bf16 ? dnnl_bf16 : dnnl_f32,
        [Int64(shape.rowStride), Int64(shape.colStride)]), "dnnl_memory_desc_init_by_strides", key.description
    )
    var memory: dnnl_memory_t?
    try dnnlCheck(
      dnnl_memory_create(&memory, &description, engine, nil), "dnnl_memory_create", key.description)
    memories[shape] = memory
    return memory
  }

  /// At least `count` bf16 elements of scratch, grown only when a larger product comes.
  func scratch(count: Int) -> UnsafeMutablePointer<UInt16> {
    if let scratchBase, scratchCapacity >= count { return scratchBase }
    scratchBase?.deallocate()
    let grown = UnsafeMutablePointer<UInt16>.allocate(capacity: count)
    scratchBase = grown
    scratchCapacity = count
    return grown
  }

  private func clearMemories() {
    for memory in memories.values { dnnl_memory_destroy(memory) }
    memories.removeAll(keepingCapacity: true)
  }

  deinit {
    products.removeAll()
    runtimeProducts.removeAll()
    clearMemories()
    scratchBase?.deallocate()
    if let stream { dnnl_stream_destroy(stream) }
    if let engine { dnnl_engine_destroy(engine) }
  }
}
