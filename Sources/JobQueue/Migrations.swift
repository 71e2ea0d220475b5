import Foundation
import Postgres

/// One numbered schema migration from `sql/` (`NNN_name.sql`).
public struct Migration: Sendable, Equatable {
    public let version: Int
    public let name: String
    public let sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// The migrations shipped with this build, in version order.
    public static func bundled() throws -> [Migration] {
        guard let directory = Bundle.module.url(forResource: "Migrations", withExtension: nil) else {
            throw PostgresError(.usage, "the migrations folder is missing from the build")
        }
        return try load(from: directory)
    }

    public static func load(from directory: URL) throws -> [Migration] {
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        var migrations: [Migration] = []
        for file in files where file.hasSuffix(".sql") {
            let stem = String(file.dropLast(4))
            guard let underscore = stem.firstIndex(of: "_"), let version = Int(stem[..<underscore]) else {
                throw PostgresError(.usage, "migration file \(file) is not named NNN_name.sql")
            }
            let sql = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            migrations.append(Migration(version: version, name: String(stem[stem.index(after: underscore)...]), sql: sql))
        }
        migrations.sort { $0.version < $1.version }
        for (a, b) in zip(migrations, migrations.dropFirst()) where a.version == b.version {
            throw PostgresError(.usage, "two migrations have version \(a.version)")
        }
        return migrations
    }
}

public enum Migrator {
    /// Arbitrary constant naming our advisory lock; any process migrating this database takes it.
    static let advisoryLockKey: Int64 = 0x4352_594E_5558  // "CRYNUX"

    /// Applies the migrations that are missing, each in its own transaction, and records them in
    /// `crynux.schema_migrations`. Safe to run from many processes at once: they serialise on an
    /// advisory lock, and the later ones find nothing left to do. Returns the versions applied.
    @discardableResult
    public static func migrate(_ db: PostgresConnection, migrations: [Migration]? = nil) throws -> [Int] {
        let migrations = try migrations ?? Migration.bundled()
        try db.execute("SELECT pg_advisory_lock($1)", [advisoryLockKey])
        defer { _ = try? db.execute("SELECT pg_advisory_unlock($1)", [advisoryLockKey]) }

        try db.executeScript("""
            CREATE SCHEMA IF NOT EXISTS crynux;
            CREATE TABLE IF NOT EXISTS crynux.schema_migrations (
                version     integer PRIMARY KEY,
                name        text NOT NULL,
                checksum    text NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            );
            """)
        var applied: [Int: String] = [:]
        for row in try db.query("SELECT version, checksum FROM crynux.schema_migrations") {
            applied[try row.get("version")] = try row.get("checksum")
        }

        var done: [Int] = []
        for migration in migrations {
            let checksum = try db.query("SELECT md5($1) AS sum", [migration.sql])[0].get("sum", as: String.self)
            if let recorded = applied[migration.version] {
                guard recorded == checksum else {
                    throw PostgresError(.usage, "migration \(migration.version)_\(migration.name) was changed after it was applied (checksum \(recorded) in the database, \(checksum) in this build)")
                }
                continue
            }
            try db.transaction { db in
                try db.executeScript(migration.sql)
                try db.execute("INSERT INTO crynux.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                               [migration.version, migration.name, checksum])
            }
            done.append(migration.version)
        }
        return done
    }

    /// The bundled migrations the database has not applied yet (all of them for an empty database).
    public static func missingVersions(_ db: PostgresConnection) throws -> [Int] {
        let applied = Set(try appliedVersions(db))
        return try Migration.bundled().map(\.version).filter { !applied.contains($0) }
    }

    /// Versions recorded in the database (empty when it was never migrated).
    public static func appliedVersions(_ db: PostgresConnection) throws -> [Int] {
        let exists = try db.query("SELECT to_regclass('crynux.schema_migrations') IS NOT NULL AS present")[0].get("present", as: Bool.self)
        guard exists else { return [] }
        return try db.query("SELECT version FROM crynux.schema_migrations ORDER BY version").map { try $0.get("version") }
    }
}
