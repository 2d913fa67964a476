/// Errors of the bf16 path: storing a tensor in bf16 and multiplying through oneDNN.
public enum BF16Error: Error, Equatable, CustomStringConvertible {
  /// A value of `tensor` is NaN, infinite, or too large for bf16 (it would round to
  /// infinity); `index` is its flat index.
  case notRepresentable(tensor: String, index: Int, value: Float)
  /// A oneDNN call failed: `call` is the C function, `status` oneDNN's name for the status
  /// (e.g. "unimplemented"), `product` the shapes, e.g. "y[64, 1536] = x[64, 576] · W[1536, 576]ᵀ".
  case dnnl(call: String, status: String, product: String)

  public var description: String {
    switch self {
    case .notRepresentable(let tensor, let index, let value):
      return
        "\(tensor): element \(index) is \(value), which bfloat16 cannot hold (largest finite "
        + "magnitude \(BFloat16.greatestFiniteMagnitude)); keep this tensor in fp32"
    case .dnnl(let call, let status, let product):
      let hint =
        status == "unimplemented"
        ? " (oneDNN has no bf16 matrix product for this CPU; it needs AVX-512, or use fp32)" : ""
      return "oneDNN \(call) failed with status \(status) for \(product)\(hint)"
    }
  }
}
