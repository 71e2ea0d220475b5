import Foundation
import JobQueue
import Postgres
import Worker

/// The queue's own cost, without the network: jobs go through the real claim → stage → apply
/// path (leases, fencing, history rows, one database transaction per outcome), and every stage
/// decides at once (or after a fixed wait standing in for its network I/O).
public struct QueueBenchmark: Sendable {
    public struct Figures: Sendable {
        public let jobs: Int
        public let seconds: Double
        public let claims: Int
        public let emptyClaims: Int
        public let statements: Int
    }

    let config: WorkerConfig
    let stageWait: Double

    /// `stageWait`: seconds each stage takes before it decides (0: a no-op stage).
    public init(config: WorkerConfig, stageWait: Double) {
        self.config = config
        self.stageWait = stageWait
    }

    /// Runs `config.concurrency` threads until no job is pending.
    public func run() throws -> Figures {
        let worker = config.workerName
        let tally = Tally()
        let statementsBefore = PostgresConnection.statementsSent
        let start = Date()
        let group = DispatchGroup()
        for _ in 0..<max(config.concurrency, 1) {
            group.enter()
            Thread {
                defer { group.leave() }
                do {
                    let db = try config.connectDatabase()
                    while true {
                        let (jobs, nextDueIn, _) = try JobStore.claimNoting(db, worker: worker, limit: config.claimBatch,
                                                                         leaseSeconds: config.leaseSeconds)
                        tally.add { $0.claims += 1; if jobs.isEmpty { $0.emptyClaims += 1 } }
                        if jobs.isEmpty {
                            guard let nextDueIn else { return }  // nothing pending
                            Thread.sleep(forTimeInterval: min(max(nextDueIn, 0.001), 0.05))
                            continue
                        }
                        for claimed in jobs {
                            // As the pipeline does: an advance due at once goes on in this thread,
                            // the lease kept, without a claim of its own.
                            var job = claimed
                            while true {
                                if stageWait > 0 { Thread.sleep(forTimeInterval: stageWait) }
                                guard let next = job.stage.next else {
                                    if try JobStore.apply(db, .succeed(results: [], note: "benchmark"), to: job, worker: worker) {
                                        tally.add { $0.done += 1 }
                                    }
                                    break
                                }
                                guard let advanced = try JobStore.advanceKeepingLease(db, .advance(to: next, note: "benchmark"), to: job,
                                                                                       worker: worker, leaseSeconds: config.leaseSeconds) else { break }
                                job = advanced
                            }
                        }
                    }
                } catch {
                    tally.add { $0.failure = "\(error)" }
                }
            }.start()
        }
        group.wait()
        let counts = tally.read()
        if let failure = counts.failure { throw WorkerError("queue benchmark: \(failure)") }
        return Figures(jobs: counts.done, seconds: -start.timeIntervalSinceNow, claims: counts.claims, emptyClaims: counts.emptyClaims,
                       statements: PostgresConnection.statementsSent - statementsBefore)
    }

    private final class Tally: @unchecked Sendable {
        struct Counts { var claims = 0, emptyClaims = 0, done = 0; var failure: String? }
        private let lock = NSLock()
        private var counts = Counts()
        func add(_ change: (inout Counts) -> Void) { lock.withLock { change(&counts) } }
        func read() -> Counts { lock.withLock { counts } }
    }
}
