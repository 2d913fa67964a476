import LoRAKernels

extension LlamaWeights {
  /// Undoes llama.cpp's q/k row permutation: within each head of HS rows, file row 2i + j
  /// holds Hugging Face row j·HS/2 + i (j ∈ {0, 1}).
  /// - destination, source: [heads·HS, IN].
  public static func unpermuteRows(_ destination: Tensor, from source: Tensor, heads: Int) {
    let rows = destination.shape[0]
    let width = destination.count / rows
    let headSize = rows / heads
    let half = headSize / 2
    for h in 0..<heads {
      for j in 0..<2 {
        for i in 0..<half {
          let to = h * headSize + j * half + i
          let from = h * headSize + 2 * i + j
          destination.view(offset: to * width, shape: [width]).copy(
            from: source.view(offset: from * width, shape: [width]))
        }
      }
    }
  }

  /// Applies llama.cpp's q/k row permutation (what `convert_hf_to_gguf.py` does to Llama and
  /// Mistral q_proj/k_proj rows, the inverse of `unpermuteRows`): within each head of HS
  /// rows, Hugging Face row j·HS/2 + i goes to row 2i + j (j ∈ {0, 1}).
  /// - destination, source: [heads·HS, IN].
  public static func permuteRows(_ destination: Tensor, from source: Tensor, heads: Int) {
    let rows = destination.shape[0]
    let width = destination.count / rows
    let headSize = rows / heads
    let half = headSize / 2
    for h in 0..<heads {
      for j in 0..<2 {
        for i in 0..<half {
          let to = h * headSize + 2 * i + j
          let from = h * headSize + j * half + i
          destination.view(offset: to * width, shape: [width]).copy(
            from: source.view(offset: from * width, shape: [width]))
        }
      }
    }
  }
}
