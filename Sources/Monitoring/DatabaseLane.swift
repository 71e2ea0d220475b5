import Dispatch
import Foundation
import JobQueue
import Postgres

/// One connection on one serial queue: the monitoring port's database reads wait their turn here,
/// off Swift's cooperative threads (libpq blocks). A failed statement drops the connection; the
/// next read opens a new one.
final class DatabaseLane: @unchecked Sendable {
    private let queue = DispatchQueue(label: "crynux.monitor.database")
    private let connect: @Sendable () throws -> PostgresConnection
    // Touched only on `queue`.
    private var connection: PostgresConnection?

    init(connect: @escaping @Sendable () throws -> PostgresConnection) {
        self.connect = connect
    }

    func run<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try self.onQueue(body) }) }
        }
    }

    func runBlocking<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        try queue.sync { try onQueue(body) }
    }

    private func onQueue<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        let db: PostgresConnection
        if let connection {
            db = connection
        } else {
            db = try connect()
            try Dashboard.prepareSession(db)
            connection = db
        }
        do {
            return try body(db)
        } catch {
            connection = nil
            throw error
        }
    }
}
