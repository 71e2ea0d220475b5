import Foundation
import Postgres
import TestSupport
import Testing

@Suite("PostgreSQL connection against a real server")
struct PostgresConnectionTests {
    let database: TestDatabase

    init() throws { database = try TestDatabase.create(prefix: "pg") }

    @Test func everySupportedTypeRoundTrips() throws {
        let db = try database.connect()
        try db.execute("""
            CREATE TABLE t (i8 bigint, i4 integer, s text, b boolean, d double precision, ts timestamptz,
                            by bytea, n numeric(78,0), frac numeric(20,6), j jsonb)
            """)
        let when = Date(timeIntervalSince1970: 1_763_700_000.123456)
        let text = "héllo, 世界 🚀 \u{0} is not allowed but quotes ' \" and \\ are"
            .replacingOccurrences(of: "\u{0}", with: "")
        let bytes: [UInt8] = [0, 1, 2, 0xFF, 0x5C, 0x27]
        let wei = "115792089237316195423570985008687907853269984665640564039457584007913129639935"
        try db.execute("INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                       [Int64.min, Int32.max, text, true, -1.5e-300, when, bytes, wei, "-12.000450", #"{"a": [1, "<&>"]}"#])
        let row = try #require(try db.query("SELECT * FROM t").first)
        #expect(try row.get("i8", as: Int64.self) == .min)
        #expect(try row.get("i4", as: Int32.self) == .max)
        #expect(try row.get("s", as: String.self) == text)
        #expect(try row.get("b", as: Bool.self) == true)
        #expect(try row.get("d", as: Double.self) == -1.5e-300)
        #expect(abs(try row.get("ts", as: Date.self).timeIntervalSince(when)) < 0.000_001)
        #expect(try row.get("by", as: [UInt8].self) == bytes)
        #expect(try row.get("n", as: String.self) == wei)
        #expect(try row.get("frac", as: String.self) == "-12.000450")
        #expect(try row.get("j", as: String.self) == #"{"a": [1, "<&>"]}"#)

        try db.execute("INSERT INTO t (i8) VALUES ($1)", [Int64?.none])
        let nulls = try #require(try db.query("SELECT * FROM t WHERE i8 IS NULL").first)
        for column in ["i8", "i4", "s", "b", "d", "ts", "by", "n"] {
            #expect(try nulls.isNull(column))
        }
        #expect(try nulls.optional("s", as: String.self) == nil)
        #expect(throws: PostgresError.self) { try nulls.get("s", as: String.self) }
        // A type mismatch is an error, not a silent conversion.
        #expect(throws: PostgresError.self) { try row.get("s", as: Int64.self) }
    }

    @Test func tenMegabyteByteaIsExact() throws {
        let db = try database.connect()
        try db.execute("CREATE TABLE blobs (id integer PRIMARY KEY, data bytea NOT NULL)")
        var generator = SystemRandomNumberGenerator()
        let words = (0..<(10 * 1024 * 1024 / 8)).map { _ in generator.next() }
        let blob = words.withUnsafeBytes { Array($0) }
        try db.execute("INSERT INTO blobs VALUES (1, $1)", [blob])
        let row = try #require(try db.query("SELECT data, octet_length(data) AS len FROM blobs").first)
        #expect(try row.get("len", as: Int64.self) == Int64(blob.count))
        let back = try row.get("data", as: [UInt8].self)
        #expect(back.count == blob.count)
        #expect(back == blob)
    }

    @Test func uniqueViolationCarriesSQLState() throws {
        let db = try database.connect()
        try db.execute("CREATE TABLE u (k text PRIMARY KEY)")
        try db.execute("INSERT INTO u VALUES ($1)", ["a"])
        let error = try #require(throws: PostgresError.self) { try db.execute("INSERT INTO u VALUES ($1)", ["a"]) }
        #expect(error.sqlState == "23505")
        #expect(error.isUniqueViolation)
        #expect(error.kind == .server)
        #expect(error.message.contains("duplicate key"))
        // The connection stays usable after a statement error.
        #expect(try db.query("SELECT count(*) FROM u")[0].get(0, as: Int64.self) == 1)
    }

    @Test func transactionRollsBackWhenBodyThrows() throws {
        struct Boom: Error {}
        let db = try database.connect()
        try db.execute("CREATE TABLE tx (v integer)")
        #expect(throws: Boom.self) {
            try db.transaction { db in
                try db.execute("INSERT INTO tx VALUES (1)")
                throw Boom()
            }
        }
        #expect(try db.query("SELECT count(*) FROM tx")[0].get(0, as: Int64.self) == 0)
        try db.transaction { db in try db.execute("INSERT INTO tx VALUES (2)") }
        #expect(try db.query("SELECT count(*) FROM tx")[0].get(0, as: Int64.self) == 1)
        // A server error inside the body rolls back too, and the connection is usable afterwards.
        #expect(throws: PostgresError.self) {
            try db.transaction { db in
                try db.execute("INSERT INTO tx VALUES (3)")
                try db.execute("SELECT 1/0")
            }
        }
        #expect(try db.query("SELECT count(*) FROM tx")[0].get(0, as: Int64.self) == 1)
    }

    @Test func listenReceivesNotifyFromAnotherConnection() throws {
        let listener = try database.connect()
        let sender = try database.connect()
        try listener.listen("jobs channel")
        #expect(try listener.waitForNotification(timeout: 0.2) == nil)
        try sender.notify("jobs channel", payload: "hello ✓")
        let note = try #require(try listener.waitForNotification(timeout: 5))
        #expect(note.channel == "jobs channel")
        #expect(note.payload == "hello ✓")
        #expect(note.backendPID == sender.backendPID)
        // Times out when nothing comes.
        let start = Date()
        #expect(try listener.waitForNotification(timeout: 0.3) == nil)
        #expect(Date().timeIntervalSince(start) >= 0.29)
    }

    @Test func reconnectsAfterBackendIsTerminated() throws {
        let victim = try database.connect()
        let admin = try database.connect()
        try victim.listen("after_reconnect")
        let oldPID = victim.backendPID
        try admin.execute("SELECT pg_terminate_backend($1)", [Int32(oldPID)])
        // The call that meets the dead connection fails with a clear connection error ...
        let error = try #require(throws: PostgresError.self) { try victim.query("SELECT 1") }
        #expect(error.kind == .connection)
        #expect(error.description.contains("connection"))
        // ... and the next call reconnects, with its LISTENs restored.
        #expect(try victim.query("SELECT 41 + 1 AS v")[0].get("v", as: Int32.self) == 42)
        #expect(victim.backendPID != oldPID)
        try admin.notify("after_reconnect", payload: "again")
        #expect(try victim.waitForNotification(timeout: 5)?.payload == "again")
    }

    @Test func injectionAttemptIsStoredLiterally() throws {
        let db = try database.connect()
        try db.execute("CREATE TABLE victims (name text)")
        let evil = "Robert'); DROP TABLE victims; --"
        try db.execute("INSERT INTO victims VALUES ($1)", [evil])
        let rows = try db.query("SELECT name FROM victims WHERE name = $1", [evil])
        #expect(rows.count == 1)
        #expect(try rows[0].get("name", as: String.self) == evil)
        #expect(try db.query("SELECT to_regclass('victims') IS NOT NULL AS ok")[0].get("ok", as: Bool.self))
    }

    @Test func aTextValueWithANulByteIsRefusedNotCutShort() throws {
        let db = try database.connect()
        try db.execute("CREATE TABLE texts (value text, raw bytea)")
        let error = try #require(throws: PostgresError.self) { try db.execute("INSERT INTO texts (value) VALUES ($1)", ["before\u{0}after"]) }
        #expect(error.kind == .usage && error.description.contains("NUL"))
        #expect(try db.query("SELECT count(*) FROM texts")[0].get(0, as: Int64.self) == 0)
        // Bytes with a NUL travel as binary, whole.
        try db.execute("INSERT INTO texts (raw) VALUES ($1)", [[UInt8]([1, 0, 2])])
        #expect(try db.query("SELECT raw FROM texts")[0].get("raw", as: [UInt8].self) == [1, 0, 2])
    }

    @Test func badURLFailsWithConnectionError() throws {
        let error = try #require(throws: PostgresError.self) {
            _ = try PostgresConnection(url: "postgres://nobody@127.0.0.1:1/none?connect_timeout=2")
        }
        #expect(error.kind == .connection)
    }
}
