import Testing

@testable import swift_lora_dist

@Suite struct CollectiveTimeoutTests {
  @Test func defaultsToTenMinutesAndZeroTurnsItOff() throws {
    #expect(try Ranks.collectiveTimeout([:]) == Ranks.defaultCollectiveTimeout)
    #expect(try Ranks.collectiveTimeout([Ranks.collectiveTimeoutVariable: "45"]) == 45)
    #expect(try Ranks.collectiveTimeout([Ranks.collectiveTimeoutVariable: "0.5"]) == 0.5)
    #expect(try Ranks.collectiveTimeout([Ranks.collectiveTimeoutVariable: "0"]) == nil)
  }

  @Test(arguments: ["ten", "-1", "inf", "nan", ""])
  func refusesWhatIsNotSeconds(text: String) throws {
    do {
      _ = try Ranks.collectiveTimeout([Ranks.collectiveTimeoutVariable: text])
      Issue.record("\(text) was accepted")
    } catch {
      #expect("\(error)".contains("SWIFT_LORA_DIST_COLLECTIVE_TIMEOUT=\(text)"))
      #expect("\(error)".contains("expected a number of seconds"))
    }
  }
}
