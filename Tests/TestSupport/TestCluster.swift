import Foundation
import Postgres

/// A PostgreSQL cluster of a test's own, to stop, start and restart without disturbing the
/// others (scripts/test's cluster is shared by every suite). As root it runs as `postgres`.
public final class TestCluster: @unchecked Sendable {
    public let directory: String
    public let port: Int
    public var url: String { "postgres://postgres@127.0.0.1:\(port)/postgres" }
    private let bin: String

    public static func start() throws -> TestCluster {
        let cluster = try TestCluster()
        try cluster.run("initdb", ["-D", cluster.directory + "/data", "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"])
        try cluster.startServer()
        return cluster
    }

    private init() throws {
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        guard let version = versions.sorted(by: { $0.compare($1, options: .numeric) == .orderedAscending }).last else {
            throw TestSetupError("no PostgreSQL server under /usr/lib/postgresql: scripts/test installs it")
        }
        bin = "/usr/lib/postgresql/\(version)/bin"
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o777])
        port = closedPort()
    }

    /// Starts the server; returns once it accepts connections.
    public func startServer() throws {
        try run("pg_ctl", ["-D", directory + "/data", "-l", directory + "/server.log", "-w", "-t", "60",
                           "-o", "-p \(port) -k \(directory) -c listen_addresses=127.0.0.1 -c fsync=off", "start"])
    }

    /// Stops the server at once (open connections are cut, as in a crash or failover).
    public func stopServer() throws {
        try run("pg_ctl", ["-D", directory + "/data", "-m", "fast", "-w", "stop"])
    }

    public func restart() throws {
        try stopServer()
        try startServer()
    }

    /// Terminates every other backend of the database (what an operator or a failover does).
    @discardableResult
    public func terminateConnections() throws -> Int {
        let db = try PostgresConnection(url: url)
        return try db.query("""
            SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS n FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
            """)[0].get("n", as: Int.self)
    }

    public func destroy() {
        _ = try? stopServer()
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func run(_ tool: String, _ arguments: [String]) throws {
        let asRoot = getuid() == 0
        if asRoot { _ = try Devnet.runProcess("/usr/bin/chown", ["-R", "postgres", directory]) }
        let (status, output) = asRoot
            ? try Devnet.runProcess("/usr/sbin/runuser", ["-u", "postgres", "--", "\(bin)/\(tool)"] + arguments)
            : try Devnet.runProcess("\(bin)/\(tool)", arguments)
        guard status == 0 else { throw TestSetupError("\(tool) failed (\(status)): \(output)") }
    }
}
