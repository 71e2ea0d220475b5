import CLibPQ
import Foundation
import Synchronization

/// Statements sent by every connection of this process (for the worker's own accounting).
private let sentStatements = Atomic<Int>(0)

/// A notification received through LISTEN.
public struct PostgresNotification: Sendable, Equatable {
    public let channel: String
    public let payload: String
    public let backendPID: Int32
}

/// One connection to PostgreSQL. Not thread-safe: give each thread its own.
///
/// Every statement is sent with its values apart (prepared once per session, then
/// `PQexecPrepared`), so values are never interpolated into SQL.
/// When the connection breaks, the call that noticed throws a `.connection` error and the
/// next call reconnects (and re-issues the LISTENs this connection had).
public final class PostgresConnection {
    private var conn: OpaquePointer?
    private let conninfo: String
    private let options: String
    private var listening: [String] = []
    /// Reconnected, and the LISTENs of `listening` not yet issued again.
    private var relistenPending = false
    private var inTransaction = false
    /// Statements prepared on this session, by text and parameter types (a value typed
    /// differently must not be read through another type's plan). Cleared on reconnect.
    private var prepared: [PreparedKey: String] = [:]
    private struct PreparedKey: Hashable { let sql: String; let types: [Oid] }
    /// A few dozen statement texts recur for the life of a worker; anything past this is not
    /// worth a server-side plan each (e.g. generated SQL) and runs unnamed.
    private static let preparedLimit = 256

    /// Connects using `url` if given, else `DATABASE_URL` if set, else libpq's standard
    /// environment (`PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`, ...).
    /// `settings` are server parameters for this session (e.g. `statement_timeout`), applied
    /// unless the URL sets `options` itself.
    public init(url: String? = nil, settings: [String: String] = [:]) throws {
        let env = ProcessInfo.processInfo.environment["DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 }
        conninfo = url ?? env ?? ""
        options = settings.sorted { $0.key < $1.key }.map { "-c \($0.key)=\($0.value)" }.joined(separator: " ")
        try connect()
    }

    deinit { if let conn { PQfinish(conn) } }

    /// Statements sent to the server by all connections of this process so far.
    public static var statementsSent: Int { sentStatements.load(ordering: .relaxed) }

    public var isConnected: Bool { conn.map { PQstatus($0) == CONNECTION_OK } ?? false }

    /// The server process id serving this connection (useful to `pg_terminate_backend`).
    public var backendPID: Int32 { conn.map { PQbackendPID($0) } ?? 0 }

    /// Defaults under whatever the URL or environment says: a dead server is noticed in seconds,
    /// not after the kernel's two-hour keepalive, and a connect never hangs for long.
    private static let defaults: [(String, String)] = [
        ("connect_timeout", "10"), ("keepalives", "1"), ("keepalives_idle", "30"), ("keepalives_interval", "10"),
        ("keepalives_count", "3"),
    ]

    private func connect() throws {
        if let conn { PQfinish(conn) }
        prepared.removeAll()
        // The URL (or key=value string) comes last and is expanded: what it sets wins over the defaults.
        let pairs = Self.defaults + (options.isEmpty ? [] : [("options", options)]) + (conninfo.isEmpty ? [] : [("dbname", conninfo)])
        let keys = pairs.map { strdup($0.0) }
        let values = pairs.map { strdup($0.1) }
        defer { (keys + values).forEach { free($0) } }
        conn = (keys.map { UnsafePointer($0) } + [nil]).withUnsafeBufferPointer { keyPointers in
            (values.map { UnsafePointer($0) } + [nil]).withUnsafeBufferPointer { valuePointers in
                PQconnectdbParams(keyPointers.baseAddress, valuePointers.baseAddress, 1)
            }
        }
        guard let conn, PQstatus(conn) == CONNECTION_OK else {
            let message = conn.map { Self.errorMessage($0) } ?? "out of memory"
            if let conn { PQfinish(conn) }
            self.conn = nil
            throw PostgresError(.connection, "cannot connect to PostgreSQL: \(message)")
        }
        // Our own notices (e.g. "schema already exists, skipping") are not errors; keep them off stderr.
        PQsetNoticeProcessor(conn, { _, _ in }, nil)
    }

    private func ensureConnected() throws -> OpaquePointer {
        if let conn, PQstatus(conn) == CONNECTION_OK, !relistenPending { return conn }
        if conn == nil || PQstatus(conn!) != CONNECTION_OK {
            inTransaction = false
            try connect()
            relistenPending = !listening.isEmpty
        }
        // The channels this connection listened to, again; until that worked, every call retries it.
        for channel in listening {
            sentStatements.add(1, ordering: .relaxed)
            guard let result = PQexec(conn!, "LISTEN \(Self.quoteIdentifier(channel))") else { throw lostOrFailed(conn!) }
            defer { PQclear(result) }
            try check(result, conn!)
        }
        relistenPending = false
        return conn!
    }

    // MARK: Queries

    /// Runs one statement and returns its rows (empty for statements without a result).
    @discardableResult
    /// `planEachTime`: not prepared, so planned for the data of the moment. For a statement whose
    /// best plan depends on how many rows wait (a claim: seq scan when the table is empty, the
    /// due index from a few hundred rows on), a plan cached early stays wrong for the session.
    public func query(_ sql: String, _ parameters: [(any PostgresEncodable)?] = [], planEachTime: Bool = false) throws -> [PostgresRow] {
        let result = try run(sql, parameters, prepare: !planEachTime)
        defer { PQclear(result) }
        return Self.rows(of: result)
    }

    /// Runs one statement and returns the number of rows it affected.
    @discardableResult
    public func execute(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) throws -> Int {
        let result = try run(sql, parameters)
        defer { PQclear(result) }
        return Int(String(cString: PQcmdTuples(result))) ?? 0
    }

    /// Runs a script of several statements without parameters (migrations). Uses the simple
    /// query protocol, which is the only one that accepts several statements in one string.
    public func executeScript(_ sql: String) throws {
        let conn = try ensureConnected()
        sentStatements.add(1, ordering: .relaxed)
        guard let result = PQexec(conn, sql) else { throw lostOrFailed(conn) }
        defer { PQclear(result) }
        try check(result, conn)
    }

    private func run(_ sql: String, _ parameters: [(any PostgresEncodable)?], prepare: Bool = true) throws -> OpaquePointer {
        let params = parameters.map { $0?.postgresParameter ?? .null }
        // libpq reads a text value up to its first NUL, so it would be stored cut short; and
        // PostgreSQL text cannot hold NUL at all. Refuse instead of losing the rest silently.
        for (index, param) in params.enumerated() where !param.isBinary && param.bytes?.contains(0) == true {
            throw PostgresError(.usage, "text parameter $\(index + 1) contains a NUL byte, which PostgreSQL text cannot hold")
        }
        let conn = try ensureConnected()
        let count = Int32(params.count)
        let types = params.map { Oid($0.oid) }
        let lengths = params.map { Int32($0.bytes?.count ?? 0) }
        let formats = params.map { Int32($0.isBinary ? 1 : 0) }
        // Text values must be NUL-terminated for libpq: a copy, small. Binary values are
        // length-delimited and go from their own storage, so a 10 MB result is not copied again.
        var copies: [Int: UnsafeMutablePointer<CChar>] = [:]
        for (index, param) in params.enumerated() {
            guard let bytes = param.bytes, !param.isBinary || bytes.isEmpty else { continue }
            let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
            bytes.withUnsafeBufferPointer { source in
                source.withMemoryRebound(to: CChar.self) { if let base = $0.baseAddress { buffer.update(from: base, count: bytes.count) } }
            }
            buffer[bytes.count] = 0
            copies[index] = buffer
        }
        defer { copies.values.forEach { $0.deallocate() } }
        func execute(from index: Int, _ values: [UnsafePointer<CChar>?]) -> OpaquePointer? {
            if index == params.count {
                guard let name = statementName else { return PQexecParams(conn, sql, count, types, values, lengths, formats, 1) }
                return PQexecPrepared(conn, name, count, values, lengths, formats, 1)
            }
            if let copy = copies[index] { return execute(from: index + 1, values + [UnsafePointer(copy)]) }
            guard let bytes = params[index].bytes else { return execute(from: index + 1, values + [nil]) }
            return bytes.withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) { execute(from: index + 1, values + [$0.baseAddress]) }
            }
        }
        // Parsed and planned once per session: most of PostgreSQL's cost for our short statements.
        let statementName = prepare ? try preparedName(conn, sql, types) : nil
        sentStatements.add(1, ordering: .relaxed)
        let result = execute(from: 0, [])
        guard let result else { throw lostOrFailed(conn) }
        do {
            try check(result, conn)
        } catch {
            PQclear(result)
            throw error
        }
        return result
    }

    /// The name `sql` is prepared under on this session, preparing it first if needed; nil when
    /// the cache is full. PostgreSQL re-plans a prepared statement by itself after DDL.
    private func preparedName(_ conn: OpaquePointer, _ sql: String, _ types: [Oid]) throws -> String? {
        let key = PreparedKey(sql: sql, types: types)
        if let name = prepared[key] { return name }
        guard prepared.count < Self.preparedLimit else { return nil }
        let name = "crynux_\(prepared.count + 1)"
        guard let result = PQprepare(conn, name, sql, Int32(types.count), types) else { throw lostOrFailed(conn) }
        defer { PQclear(result) }
        try check(result, conn)
        prepared[key] = name
        return name
    }

    private func check(_ result: OpaquePointer, _ conn: OpaquePointer) throws {
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return
        default:
            if PQstatus(conn) != CONNECTION_OK { throw lostOrFailed(conn) }
            func field(_ code: Character) -> String? {
                PQresultErrorField(result, Int32(code.asciiValue!)).map { String(cString: $0) }
            }
            throw PostgresError(.server,
                                field("M") ?? Self.errorMessage(conn),
                                sqlState: field("C"),
                                detail: field("D"))
        }
    }

    private func lostOrFailed(_ conn: OpaquePointer) -> PostgresError {
        let message = Self.errorMessage(conn)
        if PQstatus(conn) != CONNECTION_OK {
            inTransaction = false
            return PostgresError(.connection, "connection to PostgreSQL lost (it will be re-opened on the next call): \(message)")
        }
        return PostgresError(.server, message)
    }

    private static func errorMessage(_ conn: OpaquePointer) -> String {
        String(cString: PQerrorMessage(conn)).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private static func rows(of result: OpaquePointer) -> [PostgresRow] {
        let rowCount = Int(PQntuples(result))
        let columnCount = Int(PQnfields(result))
        guard columnCount > 0 else { return [] }
        let columns = PostgresColumns(
            names: (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) },
            oids: (0..<columnCount).map { UInt32(PQftype(result, Int32($0))) })
        var rows: [PostgresRow] = []
        rows.reserveCapacity(rowCount)
        for r in 0..<Int32(rowCount) {
            var values: [[UInt8]?] = []
            values.reserveCapacity(columnCount)
            for c in 0..<Int32(columnCount) {
                if PQgetisnull(result, r, c) == 1 {
                    values.append(nil)
                } else {
                    let length = Int(PQgetlength(result, r, c))
                    let pointer = UnsafeRawPointer(PQgetvalue(result, r, c)!)
                    values.append(Array(UnsafeRawBufferPointer(start: pointer, count: length)))
                }
            }
            rows.append(PostgresRow(columns: columns, values: values))
        }
        return rows
    }

    // MARK: Transactions

    /// Whether a `transaction` body is running on this session.
    public var isInTransaction: Bool { inTransaction }

    /// Runs `body` inside BEGIN/COMMIT; rolls back and rethrows when `body` throws.
    @discardableResult
    public func transaction<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        guard !inTransaction else { throw PostgresError(.usage, "nested transactions are not supported") }
        try execute("BEGIN")
        inTransaction = true
        defer { inTransaction = false }
        let value: T
        do {
            value = try body(self)
        } catch {
            if isConnected { _ = try? execute("ROLLBACK") }
            throw error
        }
        try execute("COMMIT")
        return value
    }

    // MARK: LISTEN / NOTIFY

    public func listen(_ channel: String) throws {
        try execute("LISTEN \(Self.quoteIdentifier(channel))")
        if !listening.contains(channel) { listening.append(channel) }
    }

    public func unlisten(_ channel: String) throws {
        try execute("UNLISTEN \(Self.quoteIdentifier(channel))")
        listening.removeAll { $0 == channel }
    }

    public func notify(_ channel: String, payload: String = "") throws {
        try execute("SELECT pg_notify($1, $2)", [channel, payload])
    }

    /// Waits up to `timeout` seconds for a notification on a channel this connection listens to.
    /// Returns nil when none arrived in time.
    public func waitForNotification(timeout: Double) throws -> PostgresNotification? {
        let conn = try ensureConnected()
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            guard PQconsumeInput(conn) == 1 else { throw lostOrFailed(conn) }
            if let raw = PQnotifies(conn) {
                defer { PQfreemem(raw) }
                return PostgresNotification(channel: String(cString: raw.pointee.relname),
                                            payload: String(cString: raw.pointee.extra),
                                            backendPID: raw.pointee.be_pid)
            }
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 { return nil }
            var descriptor = pollfd(fd: PQsocket(conn), events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, Int32(min(remaining, 3600) * 1000) + 1)
            if ready < 0 && errno != EINTR {
                throw PostgresError(.connection, "waiting for a notification failed: \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Quotes an identifier (channel names cannot be bound as parameters).
    public static func quoteIdentifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
