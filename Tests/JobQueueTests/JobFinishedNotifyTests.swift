import Foundation
import JobQueue
import Postgres
import TestSupport
import Testing

/// `crynux_job_finished`: the schema's contract with a backend that waits instead of polling.
@Suite("Finished jobs are announced")
struct JobFinishedNotifyTests {
    let database: TestDatabase
    let db: PostgresConnection
    let args = #"{"base_model":"crynux-ai/stable-diffusion-v1-5","prompt":"a cat","task_config":{"num_images":2}}"#

    init() throws {
        database = try TestDatabase.create(prefix: "notify")
        db = try database.connect()
        try Migrator.migrate(db)
    }

    private func listener() throws -> PostgresConnection {
        let listener = try database.connect()
        try listener.listen(JobStore.jobFinishedChannel)
        return listener
    }

    private func payload(_ note: PostgresNotification?) throws -> [String: Any] {
        let note = try #require(note)
        #expect(note.channel == JobStore.jobFinishedChannel)
        return try #require(try JSONSerialization.jsonObject(with: Data(note.payload.utf8)) as? [String: Any])
    }

    @Test func aSucceededJobIsAnnouncedAtItsCommitWithItsResultsCounted() throws {
        let listener = try listener()
        let id = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args, idempotencyKey: "order-7"))
        let job = try #require(try JobStore.claim(db, worker: "w", limit: 1, leaseSeconds: 60).first)
        // The status changes before the results are written, in one transaction: counted at commit.
        #expect(try JobStore.apply(db, .succeed(results: [ResultFile(index: 0, contentType: "image/png", data: [1]),
                                                          ResultFile(index: 1, contentType: "image/png", data: [2])], note: "done"),
                                   to: job, worker: "w"))
        let object = try payload(try listener.waitForNotification(timeout: 10))
        #expect(Set(object.keys) == ["id", "status", "kind", "idempotency_key", "results"])
        #expect((object["id"] as? NSNumber)?.int64Value == id && object["status"] as? String == "succeeded")
        #expect(object["kind"] as? String == "sd" && object["idempotency_key"] as? String == "order-7")
        #expect((object["results"] as? NSNumber)?.intValue == 2)
    }

    @Test func aChangeThatRolledBackIsNeverHeardAndEachOutcomeIsHeardOnce() throws {
        let listener = try listener()
        let rolledBack = try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: "{}"))
        let failed = try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: "{}"))
        let cancelled = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        struct Abort: Error {}
        #expect(throws: Abort.self) {
            try db.transaction { db in
                try db.execute("UPDATE crynux.jobs SET status = 'failed', finished_at = now(), last_error = 'x' WHERE id = $1", [rolledBack])
                throw Abort()
            }
        }
        // Any writer announces it, the operator's SQL too; a later change of a finished job does not.
        try db.execute("UPDATE crynux.jobs SET status = 'failed', finished_at = now(), last_error = 'by hand' WHERE id = $1", [failed])
        try db.execute("UPDATE crynux.jobs SET last_error = 'edited' WHERE id = $1", [failed])
        #expect(try JobStore.cancel(db, id: cancelled) == .cancelled)
        // A marker sent last: everything before it has arrived when it does.
        try db.notify(JobStore.jobFinishedChannel, payload: #"{"marker":true}"#)
        var heard: [[String: Any]] = []
        while true {
            let object = try payload(try listener.waitForNotification(timeout: 10))
            if object["marker"] != nil { break }
            heard.append(object)
        }
        #expect(heard.map { ($0["id"] as? NSNumber)?.int64Value } == [failed, cancelled])
        #expect(heard.map { $0["status"] as? String } == ["failed", "cancelled"])
        // Without an idempotency key the field is left out.
        #expect(heard.allSatisfy { $0["idempotency_key"] == nil && ($0["results"] as? NSNumber)?.intValue == 0 })
    }
}
