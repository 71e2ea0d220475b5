import Foundation
import Postgres

public struct TestSetupError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A database of its own for one test, created in the cluster that `DATABASE_URL` points at
/// (scripts/test starts one). Tests run in parallel, so none shares a database with another.
public struct TestDatabase: Sendable {
    public let name: String
    public let url: String

    /// The server's URL; fails loudly (never skips) when no server is configured or reachable.
    public static func serverURL() throws -> String {
        guard let url = ProcessInfo.processInfo.environment["DATABASE_URL"], !url.isEmpty else {
            throw TestSetupError("DATABASE_URL is not set: run the tests with scripts/test, which starts PostgreSQL")
        }
        return url
    }

    public static func create(prefix: String = "test") throws -> TestDatabase {
        let server = try serverURL()
        let admin: PostgresConnection
        do {
            admin = try PostgresConnection(url: server)
        } catch {
            throw TestSetupError("PostgreSQL at DATABASE_URL is not reachable (\(error)); scripts/test starts one")
        }
        let name = "\(prefix)_\(UInt64.random(in: 0...UInt64.max) & 0xFFFF_FFFF_FFFF)"
        try admin.execute("CREATE DATABASE \(PostgresConnection.quoteIdentifier(name))")
        return TestDatabase(name: name, url: replacingDatabase(in: server, with: name))
    }

    public func connect() throws -> PostgresConnection { try PostgresConnection(url: url) }

    /// This database on the hot standby scripts/test starts (REPLICA_URL); fails loudly without one.
    public func replicaURL() throws -> String {
        guard let replica = ProcessInfo.processInfo.environment["REPLICA_URL"], !replica.isEmpty else {
            throw TestSetupError("REPLICA_URL is not set: run the tests with scripts/test, which starts a hot standby")
        }
        return Self.replacingDatabase(in: replica, with: name)
    }

    public func drop() {
        guard let admin = try? PostgresConnection(url: try TestDatabase.serverURL()) else { return }
        _ = try? admin.execute("DROP DATABASE IF EXISTS \(PostgresConnection.quoteIdentifier(name)) WITH (FORCE)")
    }

    /// Swaps the database name in a `postgres://user@host:port/db?params` URL.
    static func replacingDatabase(in url: String, with name: String) -> String {
        guard var components = URLComponents(string: url) else { return url }
        components.path = "/" + name
        return components.string ?? url
    }
}

/// Polls `condition` (a row, a port, a log line) until it holds; false when `timeout` passed first.
public func waitUntil(timeout: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        Thread.sleep(forTimeInterval: 0.05)
    }
    return try condition()
}
