import Foundation
import JobQueue
import Postgres
import TestSupport
import Testing

@Suite("Schema migrations")
struct MigrationTests {
    @Test func eightConcurrentProcessesApplyEachMigrationOnce() throws {
        let database = try TestDatabase.create(prefix: "migrate")
        let expected = try Migration.bundled()
        #expect(!expected.isEmpty)

        // Eight real processes race for the same empty database.
        let processes = try (0..<8).map { _ -> (Process, Pipe) in
            let process = Process()
            process.executableURL = try Products.worker()
            process.arguments = ["migrate", "--database-url", database.url]
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            try process.run()
            return (process, pipe)
        }
        var outputs: [String] = []
        for (process, pipe) in processes {
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "migrate failed: \(output)")
            outputs.append(output)
        }
        // Exactly one process applied the migrations; the others found the schema up to date.
        #expect(outputs.filter { $0.contains("applied migration") }.count == 1)
        #expect(outputs.filter { $0.contains("up to date") }.count == 7)

        let db = try database.connect()
        let versions = try db.query("SELECT version, name FROM crynux.schema_migrations ORDER BY version")
        #expect(try versions.map { try $0.get("version", as: Int.self) } == expected.map(\.version))
        #expect(try versions.map { try $0.get("name", as: String.self) } == expected.map(\.name))
        // One copy of each object.
        let tables = try db.query("""
            SELECT table_name FROM information_schema.tables WHERE table_schema = 'crynux' AND table_type = 'BASE TABLE' ORDER BY table_name
            """).map { try $0.get("table_name", as: String.self) }
        #expect(tables == ["budgets", "job_events", "job_results", "job_transactions", "jobs", "relay_tasks", "schema_migrations", "wallets"])
        let functions = try db.query("""
            SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'crynux' ORDER BY 1
            """).map { try $0.get("proname", as: String.self) }
        #expect(functions == ["notify_job_finished", "notify_jobs", "payments_since", "record_submission", "submit_job"])
        let triggers = try db.query("""
            SELECT count(*) FROM pg_trigger WHERE tgrelid = 'crynux.jobs'::regclass AND NOT tgisinternal
            """)[0].get(0, as: Int64.self)
        #expect(triggers == 3)
        database.drop()
    }

    @Test func aChangedMigrationIsRefused() throws {
        let database = try TestDatabase.create(prefix: "migrate")
        let db = try database.connect()
        let original = [Migration(version: 1, name: "one", sql: "CREATE TABLE crynux.one (x int);")]
        #expect(try Migrator.migrate(db, migrations: original) == [1])
        #expect(try Migrator.migrate(db, migrations: original) == [])
        let edited = [Migration(version: 1, name: "one", sql: "CREATE TABLE crynux.one (x bigint);")]
        #expect(throws: PostgresError.self) { try Migrator.migrate(db, migrations: edited) }
        database.drop()
    }

    @Test func aFailingMigrationLeavesNothingBehind() throws {
        let database = try TestDatabase.create(prefix: "migrate")
        let db = try database.connect()
        let broken = [Migration(version: 1, name: "broken", sql: "CREATE TABLE crynux.half (x int); SELECT 1/0;")]
        #expect(throws: PostgresError.self) { try Migrator.migrate(db, migrations: broken) }
        #expect(try Migrator.appliedVersions(db) == [])
        #expect(try db.query("SELECT to_regclass('crynux.half') IS NULL AS gone")[0].get("gone", as: Bool.self))
        database.drop()
    }
}
