import Foundation
import JobQueue
import Postgres
import TestSupport
import Testing

@Suite("Jobs: submit, claim, lease, cancel, retry")
struct JobQueueTests {
    let database: TestDatabase

    init() throws {
        database = try TestDatabase.create(prefix: "queue")
        try Migrator.migrate(try database.connect())
    }

    let args = #"{"base_model":"crynux-ai/stable-diffusion-v1-5","prompt":"a cat","task_config":{"num_images":1}}"#

    @Test func submitWithIdempotencyKeyReturnsTheSameJob() throws {
        let db = try database.connect()
        let first = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args, idempotencyKey: "order-17"))
        let second = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args, idempotencyKey: "order-17"))
        let third = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        #expect(first == second)
        #expect(third != first)
        #expect(try db.query("SELECT count(*) FROM crynux.jobs")[0].get(0, as: Int64.self) == 2)
        // Plain SQL works too, and records the submission in the history.
        let viaSQL = try db.query("SELECT crynux.submit_job('gpt', $1) AS id", [#"{"model":"m","messages":[]}"#])[0].get("id", as: Int64.self)
        #expect(try JobStore.events(db, jobId: viaSQL).map(\.detail) == ["submitted"])
        // A bad kind is refused by the schema itself.
        #expect(throws: PostgresError.self) { try JobStore.submit(db, JobSubmission(kind: "video", taskArgs: "{}")) }
    }

    @Test func insertWakesListeners() throws {
        let listener = try database.connect()
        try listener.listen(JobStore.notifyChannel)
        try JobStore.submit(try database.connect(), JobSubmission(kind: "sd", taskArgs: args))
        #expect(try listener.waitForNotification(timeout: 5)?.channel == JobStore.notifyChannel)
    }

    @Test func concurrentClaimsNeverShareAJob() throws {
        let db = try database.connect()
        for _ in 0..<40 { try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args)) }
        let claimed = ClaimLog()
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            guard let conn = try? database.connect() else { return }
            while let jobs = try? JobStore.claim(conn, worker: "w\(worker)", limit: 3, leaseSeconds: 60), !jobs.isEmpty {
                claimed.add(jobs.map(\.id))
            }
        }
        #expect(claimed.ids.count == 40)
        #expect(Set(claimed.ids).count == 40)
    }

    @Test func priorityAndNotBeforeOrderClaims() throws {
        let db = try database.connect()
        let low = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args, priority: 0))
        let high = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args, priority: 5))
        _ = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args, priority: 9, notBefore: Date().addingTimeInterval(3600)))
        // Within a priority, work closer to done goes first, even when it became due later.
        let nearlyDone = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args, priority: 0))
        try db.execute("UPDATE crynux.jobs SET stage = 'fetch', run_at = now() + interval '1 millisecond' WHERE id = $1", [nearlyDone])
        Thread.sleep(forTimeInterval: 0.01)
        let claimed = try JobStore.claim(db, worker: "w", limit: 10, leaseSeconds: 60)
        #expect(claimed.map(\.id) == [high, nearlyDone, low])
    }

    @Test func aWorkerWhoseLeaseExpiredCannotWrite() throws {
        let db = try database.connect()
        let id = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        let slow = try #require(try JobStore.claim(db, worker: "slow", limit: 1, leaseSeconds: 0.2).first)
        #expect(try JobStore.claim(db, worker: "fast", limit: 1, leaseSeconds: 60).isEmpty)
        Thread.sleep(forTimeInterval: 0.3)
        let fast = try #require(try JobStore.claim(db, worker: "fast", limit: 1, leaseSeconds: 60).first)
        #expect(fast.id == id)
        #expect(fast.leaseToken > slow.leaseToken)
        // The slow worker's outcome is refused; the fast one's lands.
        #expect(try JobStore.apply(db, .advance(to: .upload, note: "created"), to: slow, worker: "slow") == false)
        #expect(try JobStore.apply(db, .advance(to: .upload, note: "created"), to: fast, worker: "fast"))
        let job = try #require(try JobStore.job(db, id: id))
        #expect(job.stage == .upload)
        #expect(job.lockedBy == nil)
        #expect(try JobStore.events(db, jobId: id).last?.worker == "fast")
    }

    @Test func failedTriesCountUpAndASuccessEndsTheStreakWithoutRestartingTheStageClock() throws {
        let db = try database.connect()
        let id = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        func claimed() throws -> Job { try #require(try JobStore.claim(db, worker: "w", limit: 1, leaseSeconds: 60).first) }
        let entered = try #require(try JobStore.job(db, id: id)).stageEnteredAt
        try JobStore.apply(db, .wait(after: 0, failedTry: true, error: "node unreachable"), to: try claimed(), worker: "w")
        try JobStore.apply(db, .wait(after: 0, failedTry: true, error: "node unreachable"), to: try claimed(), worker: "w")
        #expect(try JobStore.job(db, id: id)?.stageAttempts == 2)
        #expect(try JobStore.job(db, id: id)?.lastError == "node unreachable")
        try JobStore.apply(db, .wait(after: 0), to: try claimed(), worker: "w")
        let job = try #require(try JobStore.job(db, id: id))
        #expect(job.stageAttempts == 0)
        #expect(job.stageEnteredAt == entered)
    }

    @Test func cancelFreesTheLeaseAndFencesTheHolder() throws {
        let db = try database.connect()
        let id = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        let held = try #require(try JobStore.claim(db, worker: "w", limit: 1, leaseSeconds: 60).first)
        #expect(try JobStore.cancel(db, id: id) == .cancelled)
        #expect(try JobStore.apply(db, .advance(to: .upload, note: "created"), to: held, worker: "w") == false)
        let job = try #require(try JobStore.job(db, id: id))
        #expect(job.status == .cancelled)
        #expect(job.lockedBy == nil)
        #expect(job.finishedAt != nil)
        #expect(try JobStore.cancel(db, id: id) == .alreadyFinished(.cancelled))
    }

    @Test func cancelOfASignedCreateWaitsForTheNonceToBeUsed() throws {
        let db = try database.connect()
        let id = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        try db.execute("UPDATE crynux.jobs SET tx_nonce = 7, tx_signed_at = now() WHERE id = $1", [id])
        #expect(try JobStore.cancel(db, id: id) == .requested)
        let job = try #require(try JobStore.job(db, id: id))
        #expect(job.status == .pending)
        #expect(job.cancelRequested)
    }

    @Test func retryRestartsFromTheStageTheFailureAllows() throws {
        let db = try database.connect()
        let id = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        #expect(try JobStore.retry(db, id: id) == .notFailed(.pending))
        // Failed while fetching from a task that can still deliver: retry keeps the task.
        var job = try #require(try JobStore.claim(db, worker: "w", limit: 1, leaseSeconds: 60).first)
        try JobStore.apply(db, .advance(to: .fetch, facts: JobFacts(taskId: 5), note: "task 5 succeeded"), to: job, worker: "w")
        job = try #require(try JobStore.claim(db, worker: "w", limit: 1, leaseSeconds: 60).first)
        try JobStore.apply(db, .fail(reason: "results not uploaded in time", retryFrom: .fetch), to: job, worker: "w")
        #expect(try JobStore.retry(db, id: id) == .requeued(from: .fetch))
        job = try #require(try JobStore.job(db, id: id))
        #expect(job.status == .pending && job.stage == .fetch && job.taskId == 5 && job.lastError == nil)
        // Failed because the task was aborted on chain: retry makes a new task.
        job = try #require(try JobStore.claim(db, worker: "w", limit: 1, leaseSeconds: 60).first)
        try JobStore.apply(db, .fail(reason: "aborted", retryFrom: .create), to: job, worker: "w")
        #expect(try JobStore.retry(db, id: id) == .requeued(from: .create))
        job = try #require(try JobStore.job(db, id: id))
        #expect(job.stage == .create && job.taskId == nil && job.txHash == nil)
    }

    @Test func cliSubmitShowStatus() throws {
        let env = ["DATABASE_URL": database.url]
        let submit = try Products.runWorker(["submit", "--kind", "sd", "--idempotency-key", "cli-1"], environment: env, stdin: args + "\n")
        #expect(submit.status == 0, "\(submit.output)")
        let id = try #require(Int64(submit.output.trimmingCharacters(in: .whitespacesAndNewlines)))
        let stored = try #require(try JobStore.job(try database.connect(), id: id))
        #expect(stored.taskArgs == args)
        let show = try Products.runWorker(["show", String(id)], environment: env)
        #expect(show.status == 0 && show.output.contains("submitted"))
        let status = try Products.runWorker(["status"], environment: env)
        #expect(status.status == 0 && status.output.contains("pending"))
        let bad = try Products.runWorker(["submit", "--kind", "video"], environment: env, stdin: "{}")
        #expect(bad.status != 0)
    }
}

final class ClaimLog: @unchecked Sendable {
    private let lock = NSLock()
    private var claimed: [Int64] = []
    func add(_ ids: [Int64]) { lock.withLock { claimed += ids } }
    var ids: [Int64] { lock.withLock { claimed } }
}
