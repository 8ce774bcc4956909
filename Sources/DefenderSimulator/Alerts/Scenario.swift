import OrderedJSON
import Timekeeping

/// How alerts arrive while the simulator runs; every knob combines with the others.
public struct Scenario: Sendable, Equatable, Codable {
    /// Alerts present from the start, spread over `backlogSpanSeconds` before the start.
    public var backlog: Int = 0
    public var backlogSpanSeconds: Double = 86_400
    /// Steady arrival: events per minute (each is a new alert, an update or a re-surfacing).
    public var ratePerMinute: Double = 0
    /// Share of arrivals that update an existing alert (status, assignment, classification, comment).
    public var updateFraction: Double = 0
    /// Share of arrivals that bring an old alert back with a new `lastUpdateTime`.
    public var resurfaceFraction: Double = 0
    /// Share of new alerts and updates that become visible only `lateSeconds` after their `lastUpdateTime`.
    public var lateFraction: Double = 0
    public var lateSeconds: Double = 0
    /// Alerts created per arrival sharing one `lastUpdateTime` (1 = ordinary).
    public var batchSize: Int = 1

    public init() {}

    private enum CodingKeys: String, CodingKey {
        case backlog, backlogSpanSeconds, ratePerMinute, updateFraction, resurfaceFraction, lateFraction, lateSeconds, batchSize
    }

    /// Missing keys keep their defaults, so `{"ratePerMinute": 10}` is a whole scenario.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = Scenario()
        backlog = try container.decodeIfPresent(Int.self, forKey: .backlog) ?? defaults.backlog
        backlogSpanSeconds = try container.decodeIfPresent(Double.self, forKey: .backlogSpanSeconds) ?? defaults.backlogSpanSeconds
        ratePerMinute = try container.decodeIfPresent(Double.self, forKey: .ratePerMinute) ?? defaults.ratePerMinute
        updateFraction = try container.decodeIfPresent(Double.self, forKey: .updateFraction) ?? defaults.updateFraction
        resurfaceFraction = try container.decodeIfPresent(Double.self, forKey: .resurfaceFraction) ?? defaults.resurfaceFraction
        lateFraction = try container.decodeIfPresent(Double.self, forKey: .lateFraction) ?? defaults.lateFraction
        lateSeconds = try container.decodeIfPresent(Double.self, forKey: .lateSeconds) ?? defaults.lateSeconds
        batchSize = try container.decodeIfPresent(Int.self, forKey: .batchSize) ?? defaults.batchSize
    }

    /// Checks the values; the message names the bad one.
    public func validate() throws(SimulatorSetupError) {
        for (name, value) in [("updateFraction", updateFraction), ("resurfaceFraction", resurfaceFraction), ("lateFraction", lateFraction)]
        where !(0...1).contains(value) {
            throw SimulatorSetupError("\(name) must be between 0 and 1, not \(value)")
        }
        guard updateFraction + resurfaceFraction <= 1 else { throw SimulatorSetupError("updateFraction + resurfaceFraction must not exceed 1") }
        guard backlog >= 0, ratePerMinute >= 0, lateSeconds >= 0, backlogSpanSeconds > 0, batchSize >= 1 else {
            throw SimulatorSetupError(
                "backlog, ratePerMinute and lateSeconds must not be negative; backlogSpanSeconds and batchSize must be positive")
        }
    }
}

/// Plays a scenario forward in time: arrivals happen at exact, seed-determined instants, so
/// the same seed and the same request times give the same alerts.
struct ScenarioPlayer {
    var scenario: Scenario
    var start: Timestamp
    var arrivals = 0
    var generator: AlertGenerator
    var random: SeededRandom

    init(scenario: Scenario, start: Timestamp, generator: AlertGenerator, seed: UInt64) {
        self.scenario = scenario
        self.start = start
        self.generator = generator
        self.random = SeededRandom(seed: seed ^ 0x5CE7_A210)
    }

    /// Creates the backlog.
    mutating func seedBacklog(into store: inout AlertStore) {
        guard scenario.backlog > 0 else { return }
        let span = scenario.backlogSpanSeconds
        for index in 0..<scenario.backlog {
            let offset = span * Double(scenario.backlog - index) / Double(scenario.backlog)
            let time = generator.stamp(start.adding(seconds: -offset))
            _ = try? store.upsert(generator.makeAlert(lastUpdateTime: time))
        }
    }

    /// Makes every arrival due up to `now`.
    mutating func advance(to now: Timestamp, store: inout AlertStore) {
        guard scenario.ratePerMinute > 0 else { return }
        let elapsed = Double(now.ticks - start.ticks) / 10_000_000
        let due = Int((elapsed * scenario.ratePerMinute / 60).rounded(.down))
        while arrivals < due {
            arrivals += 1
            let time = generator.stamp(start.adding(seconds: Double(arrivals) * 60 / scenario.ratePerMinute))
            arrive(at: time, store: &store)
        }
    }

    private mutating func arrive(at time: Timestamp, store: inout AlertStore) {
        let late = random.chance(scenario.lateFraction)
        let visibleFrom = late ? time.adding(seconds: scenario.lateSeconds) : time
        let roll = Double.random(in: 0..<1, using: &random)
        if store.count > 0, roll < scenario.updateFraction + scenario.resurfaceFraction {
            let resurface = roll >= scenario.updateFraction
            // Updates touch recent alerts; re-surfacing brings back one of the oldest.
            let pool = resurface ? max(1, store.count / 4) : max(1, min(store.count, 50))
            let index = resurface ? Int.random(in: 0..<pool, using: &random) : store.count - 1 - Int.random(in: 0..<pool, using: &random)
            var object = store.alerts[index].object
            if resurface {
                object.set("lastUpdateTime", .string(time.description))
            } else {
                object = generator.update(object, at: time)
            }
            _ = try? store.upsert(object, visibleFrom: visibleFrom)
            return
        }
        for _ in 0..<scenario.batchSize {
            _ = try? store.upsert(generator.makeAlert(lastUpdateTime: time), visibleFrom: visibleFrom)
        }
    }
}
