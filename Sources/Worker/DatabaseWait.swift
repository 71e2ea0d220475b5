import Foundation
import Postgres

/// Runs `body` until it gets through to PostgreSQL: a connection failure (server down,
/// restarting, failing over) is waited out with backoff and one log line per try, until
/// `timeout` seconds (nil: forever) or `stopping()`. Any other error goes up at once.
public func waitingForDatabase<T>(_ what: String, timeout: Double?, log: WorkerLog, stopping: () -> Bool = { false },
                                  _ body: () throws -> T) throws -> T {
    let started = Date()
    var attempt = 0
    while true {
        attempt += 1
        do {
            return try body()
        } catch let error as PostgresError where error.kind == .connection {
            let waited = Date().timeIntervalSince(started)
            if let timeout, waited >= timeout {
                throw WorkerError("\(what): PostgreSQL did not answer within \(Int(timeout)) s (\(error))")
            }
            if stopping() { throw error }
            let delay = min(0.25 * pow(2, Double(min(attempt, 10))), 5, timeout.map { max($0 - waited, 0.05) } ?? .infinity)
            log.info("\(what): waiting for PostgreSQL (try \(attempt), next in \(String(format: "%.1f", delay)) s): \(error)")
            Thread.sleep(forTimeInterval: delay)
        }
    }
}

/// A start-up or invariant failure of the worker, in one sentence.
public struct WorkerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
