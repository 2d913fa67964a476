import Foundation
import LoRAFormats
import Testing

@testable import LoRATraining

// MARK: Truncation and packing

@Suite struct DatasetLengthTests {
  @Test func truncationKeepsTheStartAndDropsUntrainedExamples() throws {
    let folder = try DataTestFolder()
    let path = try folder.write(
      #"{"input_ids": [1, 2, 3, 4, 5, 6]}"#,
      #"{"input_ids": [1, 2, 3, 4, 5, 6], "labels": [-100, -100, -100, -100, 5, 6]}"#,
      #"{"input_ids": [7, 8, 9, 10]}"#)
    let dataset = try DatasetLoader.load(
      path: path, tokenizer: try smolLM2(), options: DatasetOptions(maxSequenceLength: 4))
    #expect(
      dataset.examples == [
        Example(tokens: [1, 2, 3, 4], trained: [false, true, true, true]),
        Example(tokens: [7, 8, 9, 10], trained: [false, true, true, true]),
      ])
    #expect(
      dataset.stats
        == DatasetStats(lines: 3, examples: 2, skippedLines: 0, truncated: 2, tokens: 8, trainedTokens: 6))
  }

  @Test func packingFillsSequencesInFileOrder() throws {
    let folder = try DataTestFolder()
    let path = try folder.write(
      #"{"input_ids": [1, 2, 3]}"#,
      #"{"input_ids": [4, 5, 6, 7], "labels": [-100, -100, 6, 7]}"#,
      #"{"input_ids": [8, 9, 10]}"#)
    let dataset = try DatasetLoader.load(
      path: path, tokenizer: try smolLM2(), options: DatasetOptions(maxSequenceLength: 4, pack: true))
    // Flags in file order: F T T | F F T T | F T T; each sequence's first flag is then false.
    #expect(
      dataset.examples == [
        Example(tokens: [1, 2, 3, 4], trained: [false, true, true, false]),
        Example(tokens: [5, 6, 7, 8], trained: [false, true, true, false]),
        Example(tokens: [9, 10], trained: [false, true]),
      ])
    #expect(
      dataset.stats
        == DatasetStats(lines: 3, examples: 3, skippedLines: 0, truncated: 0, tokens: 10, trainedTokens: 5))
  }

  @Test func packingDropsATailWithNothingToTrain() {
    let examples = [
      Example(tokens: [1, 2, 3], trained: [false, true, true]),
      Example(tokens: [4, 5, 6], trained: [false, true, true]),
    ]
    #expect(
      DatasetLoader.pack(examples, length: 5) == [
        Example(tokens: [1, 2, 3, 4, 5], trained: [false, true, true, false, true])
      ])
    #expect(DatasetLoader.pack(examples, length: 3) == examples)
  }
}

// MARK: Split, sampler, batch

@Suite struct DataBatchingTests {
  private func dataset(_ count: Int) -> Dataset {
    let examples = (0..<count).map { Example(tokens: [Int32($0), 1], trained: [false, true]) }
    return Dataset(
      examples: examples,
      stats: DatasetStats(
        lines: count, examples: count, skippedLines: 0, truncated: 0, tokens: 2 * count, trainedTokens: count)
    )
  }

  @Test func splitIsSeededDisjointAndInFileOrder() throws {
    let data = dataset(30)
    let first = try Dataset.split(data, validationFraction: 0.1, seed: 7)
    let again = try Dataset.split(data, validationFraction: 0.1, seed: 7)
    let other = try Dataset.split(data, validationFraction: 0.1, seed: 8)
    #expect(first.validation.count == 3 && first.train.count == 27)
    #expect(first.train == again.train && first.validation == again.validation)
    #expect(first.validation != other.validation)
    let ids = (first.train + first.validation).map { $0.tokens[0] }
    #expect(ids.sorted() == (0..<30).map { Int32($0) })
    #expect(first.train.map { $0.tokens[0] } == first.train.map { $0.tokens[0] }.sorted())
    #expect(first.validation.map { $0.tokens[0] } == first.validation.map { $0.tokens[0] }.sorted())

    #expect(try Dataset.split(data, validationFraction: 0.001, seed: 1).validation.count == 1)
    #expect(try Dataset.split(data, validationFraction: 0, seed: 1).train.count == 30)
    #expect(
      throws: DataError.invalidOption("validation fraction 0.5 of 1 examples leaves no training example")
    ) {
      try Dataset.split(self.dataset(1), validationFraction: 0.5, seed: 1)
    }
    #expect(throws: DataError.invalidOption("validation fraction must be in [0, 1), got 1.0")) {
      try Dataset.split(data, validationFraction: 1, seed: 1)
    }
  }

  @Test func ranksSliceTheOneRankBatch() throws {
    for shuffle in [false, true] {
      let sampler = BatchSampler(exampleCount: 10, globalBatch: 8, seed: 42, shuffle: shuffle)
      for step in 0..<6 {
        let whole = try sampler.indices(step: step, rank: 0, ranks: 1)
        #expect(whole.count == 8)
        for ranks in [2, 4] {
          let union = try (0..<ranks).flatMap { try sampler.indices(step: step, rank: $0, ranks: ranks) }
          #expect(union == whole, "step \(step), \(ranks) ranks")
        }
      }
    }
  }

  @Test func epochsWrapAndSeedsDecide() throws {
    let ordered = BatchSampler(exampleCount: 10, globalBatch: 4, seed: 1, shuffle: false)
    #expect(try ordered.indices(step: 2, rank: 0, ranks: 1) == [8, 9, 0, 1])
    #expect(try ordered.indices(step: 2, rank: 1, ranks: 2) == [0, 1])
    #expect(ordered.globalPosition(step: 3) == 12)
    #expect(ordered.epoch(step: 5) == 2.0)

    let shuffled = BatchSampler(exampleCount: 10, globalBatch: 5, seed: 3, shuffle: true)
    func epochOrder(_ sampler: BatchSampler, _ epoch: Int) throws -> [Int] {
      try sampler.indices(step: 2 * epoch, rank: 0, ranks: 1)
        + sampler.indices(step: 2 * epoch + 1, rank: 0, ranks: 1)
    }
    let epoch0 = try epochOrder(shuffled, 0)
    let epoch1 = try epochOrder(shuffled, 1)
    #expect(epoch0.sorted() == Array(0..<10) && epoch1.sorted() == Array(0..<10))
    #expect(epoch0 != epoch1 && epoch0 != Array(0..<10))
    let same = BatchSampler(exampleCount: 10, globalBatch: 5, seed: 3, shuffle: true)
    #expect(try epochOrder(same, 1) == epoch1)
    let other = BatchSampler(exampleCount: 10, globalBatch: 5, seed: 4, shuffle: true)
    #expect(try epochOrder(other, 0) != epoch0)
    // A step that straddles two epochs takes the end of one and the start of the next.
    let straddle = BatchSampler(exampleCount: 10, globalBatch: 6, seed: 3, shuffle: true)
    #expect(try straddle.indices(step: 1, rank: 0, ranks: 1) == Array(epoch0.suffix(4) + epoch1.prefix(2)))
  }

  @Test func samplerRejectsBadShapes() throws {
    let sampler = BatchSampler(exampleCount: 10, globalBatch: 6, seed: 0, shuffle: true)
    #expect(throws: DataError.invalidOption("global batch 6 is not divisible by 4 ranks")) {
      try sampler.indices(step: 0, rank: 0, ranks: 4)
    }
    #expect(throws: DataError.invalidOption("rank 2 is not in 0..<2")) {
      try sampler.indices(step: 0, rank: 2, ranks: 2)
    }
    #expect(throws: DataError.invalidOption("the sampler has no examples")) {
      try BatchSampler(exampleCount: 0, globalBatch: 2, seed: 0, shuffle: false).indices(
        step: 0, rank: 0, ranks: 1)
    }
    let coded = try JSONDecoder().decode(BatchSampler.self, from: JSONEncoder().encode(sampler))
    #expect(coded == sampler)
  }

  @Test func batchShiftsTargetsAndPads() {
    let examples = [
      Example(tokens: [11, 12, 13, 14], trained: [false, false, true, true]),
      Example(tokens: [21, 22], trained: [false, true]),
    ]
    let batch = Batch(examples: examples, length: nil, padID: 0)
    #expect(batch.batch == 2 && batch.length == 4)
    #expect(batch.tokens == [11, 12, 13, 14, 21, 22, 0, 0])
    #expect(batch.targets == [-1, 13, 14, -1, 22, -1, -1, -1])
    #expect(batch.trainedCount == 3)

    let cut = Batch(examples: examples, length: 3, padID: 2)
    #expect(cut.tokens == [11, 12, 13, 21, 22, 2])
    #expect(cut.targets == [-1, 13, -1, 22, -1, -1])
    #expect(cut.trainedCount == 2)
  }
}
