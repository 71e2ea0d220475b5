import BigInt
import Ethereum
import Foundation
import JobQueue
import Postgres
import TestSupport
import Testing

/// Every write of the store: fenced by the lease, atomic with its history row.
@Suite("Store: fencing and atomicity")
struct StoreTests {
    let database: TestDatabase
    let db: PostgresConnection
    let wallet = Address(bytes: [UInt8](repeating: 0x5A, count: 20))
    let args = #"{"base_model":"crynux-ai/stable-diffusion-v1-5","prompt":"a cat","task_config":{"num_images":1}}"#

    init() throws {
        database = try TestDatabase.create(prefix: "store")
        db = try database.connect()
        try Migrator.migrate(db)
        try JobStore.reconcileWallet(db, wallet, chainId: 1, pendingNonce: 3)
    }

    /// One job per task of a chain: a second row naming it is refused by the schema.
    @Test func twoJobsCannotHoldOneTaskOfOneChain() throws {
        let a = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        let b = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        let set = "UPDATE crynux.jobs SET network_profile = 'era-d', chain_id = $2, task_id = 7 WHERE id = $1"
        try db.execute(set, [a, Int64(1)])
        #expect(throws: PostgresError.self) { try db.execute(set, [b, Int64(1)]) }
        try db.execute(set, [b, Int64(2)])  // the same id on another chain is another task
    }

    private func claimed() throws -> Job {
        try #require(try JobStore.claim(db, worker: "w", limit: 1, leaseSeconds: 60).first)
    }

    /// An idle worker's look at the queue is one statement: the claim names when the next job is due,
    /// leaving out what it just claimed (which would look due at once) and what others hold.
    @Test func aClaimThatIsNotFullNamesTheNextDueTime() throws {
        let now = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        _ = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args, notBefore: Date(timeIntervalSinceNow: 30)))
        let first = try JobStore.claimNoting(db, worker: "w", limit: 2, leaseSeconds: 60)
        #expect(first.jobs.map(\.id) == [now])
        let wait = try #require(first.nextDueIn)
        #expect(wait > 25 && wait <= 30, "\(wait)")
        // Nothing due now: no job, and still the later one's time (the leased one counts from its lease's end).
        let second = try JobStore.claimNoting(db, worker: "w", limit: 2, leaseSeconds: 60)
        #expect(second.jobs.isEmpty)
        #expect(try #require(second.nextDueIn) > 25)
        // A full claim does not look further: more may be due at once.
        _ = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        _ = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        let full = try JobStore.claimNoting(db, worker: "w", limit: 1, leaseSeconds: 60)
        #expect(full.jobs.count == 1 && full.nextDueIn == nil)
        // Nothing pending at all: no time.
        try db.execute("UPDATE crynux.jobs SET status = 'cancelled', finished_at = now(), run_at = NULL")
        #expect(try JobStore.claimNoting(db, worker: "w", limit: 1, leaseSeconds: 60).nextDueIn == nil)
    }

    /// Due polls come on top of a claim's limit, up to their own: a thousand tasks in flight go out
    /// as a few batches, not one claim per few jobs.
    @Test func pollsAreClaimedInBatchesOnTopOfTheLimit() throws {
        let creates = try (0..<3).map { _ in try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args)) }
        let polls = try (0..<12).map { _ in try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args)) }
        try db.execute("UPDATE crynux.jobs SET stage = 'poll', task_id = id, tx_block_number = 1 WHERE id = ANY($1::bigint[])",
                       ["{" + polls.map(String.init).joined(separator: ",") + "}"])
        let first = try JobStore.claimNoting(db, worker: "w", limit: 2, pollLimit: 10, leaseSeconds: 60)
        #expect(first.jobs.filter { $0.stage == .poll }.count == 10)
        #expect(first.jobs.filter { $0.stage == .create }.map(\.id) == Array(creates.prefix(2)))
        #expect(first.nextDueIn == nil)  // full: more may be due
        let second = try JobStore.claimNoting(db, worker: "w", limit: 2, pollLimit: 10, leaseSeconds: 60)
        #expect(second.jobs.filter { $0.stage == .poll }.count == 2 && second.jobs.filter { $0.stage == .create }.count == 1)
        #expect(second.nextDueIn != nil)  // short on both: the next due time comes with it
        #expect(Set((first.jobs + second.jobs).map(\.id)).count == 15)
    }

    /// Polls that found their tasks running are written in one statement, each still fenced by its lease.
    @Test func stillWaitingIsWrittenTogetherAndFenced() throws {
        for _ in 0..<3 { _ = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args)) }
        let jobs = try JobStore.claim(db, worker: "w", limit: 3, leaseSeconds: 60)
        #expect(jobs.count == 3)
        try steal(jobs[1])
        let events = try jobs.map { try eventCount($0.id) }
        let written = try JobStore.applyStillWaiting(db, jobs.map { ($0, 30) })
        #expect(written == [jobs[0].id, jobs[2].id])
        for job in [jobs[0], jobs[2]] {
            let row = try db.query("""
                SELECT locked_by IS NULL AS free, extract(epoch FROM run_at - now())::float8 AS due FROM crynux.jobs WHERE id = $1
                """, [job.id])[0]
            #expect(try row.get("free", as: Bool.self))
            #expect(try row.get("due", as: Double.self) > 25)
        }
        // The stolen one is untouched: still leased, due as before.
        #expect(try db.query("SELECT locked_by FROM crynux.jobs WHERE id = $1", [jobs[1].id])[0].optional("locked_by", as: String.self) == "w")
        // No history line for a poll that changed nothing.
        #expect(try jobs.map { try eventCount($0.id) } == events)
        #expect(try JobStore.applyStillWaiting(db, []).isEmpty)
    }

    private func steal(_ job: Job) throws {
        try db.execute("UPDATE crynux.jobs SET lease_token = lease_token + 1 WHERE id = $1", [job.id])
    }

    private func eventCount(_ id: Int64) throws -> Int { try JobStore.events(db, jobId: id).count }

    private func draft(replacing nonce: UInt64? = nil) -> TransactionDraft {
        TransactionDraft(purpose: .createTask, wallet: wallet, replacingNonce: nonce, to: .zero, data: [1, 2], value: 5,
                         gasLimit: 21_000, gasPrice: 7, tip: nil)
    }

    private func fakeSign(_ nonce: UInt64) -> (hash: [UInt8], raw: [UInt8]) {
        (keccak256(Array("tx \(nonce) \(UUID())".utf8)), [0xF8, UInt8(truncatingIfNeeded: nonce)])
    }

    @Test func everyOutcomeIsFencedByTheLease() throws {
        let outcomes: [StageOutcome] = [
            .advance(to: .upload, facts: JobFacts(taskId: 1), note: "created"),
            .wait(after: 5, failedTry: true, error: "boom"),
            .fail(reason: "no", retryFrom: .create),
            .cancel(note: "stop"),
            .succeed(results: [ResultFile(index: 0, contentType: "image/png", data: [1])], note: "done"),
        ]
        for outcome in outcomes {
            let id = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
            try db.execute("UPDATE crynux.jobs SET run_at = now() + interval '1 hour' WHERE id <> $1 AND status = 'pending'", [id])
            let job = try claimed()
            try steal(job)
            let before = try #require(try JobStore.job(db, id: id))
            #expect(try JobStore.apply(db, outcome, to: job, worker: "w") == false, "\(outcome)")
            let after = try #require(try JobStore.job(db, id: id))
            #expect(after.status == before.status && after.stage == before.stage && after.stageAttempts == before.stageAttempts
                    && after.lastError == before.lastError && after.taskId == before.taskId, "\(outcome)")
            #expect(try eventCount(id) == 1, "\(outcome)")
            #expect(try JobStore.results(db, jobIds: [id]).isEmpty)
        }
    }

    @Test func anOutcomeAndItsHistoryRowAndResultsLandTogetherOrNotAtAll() throws {
        let id = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        let job = try claimed()
        // A result the schema refuses (negative index) takes the status change and history with it.
        let bad = StageOutcome.succeed(results: [ResultFile(index: 0, contentType: "image/png", data: [1]),
                                                 ResultFile(index: -1, contentType: "image/png", data: [2])], note: "done")
        #expect(throws: PostgresError.self) { try JobStore.apply(db, bad, to: job, worker: "w") }
        var row = try #require(try JobStore.job(db, id: id))
        #expect(try row.status == .pending && (eventCount(id)) == 1 && (JobStore.results(db, jobIds: [id])).isEmpty)
        // The good one: status, results, stamp and history in one go.
        #expect(try JobStore.apply(db, .succeed(results: [ResultFile(index: 0, contentType: "image/png", data: [9, 9])], note: "done"),
                                   to: job, worker: "w"))
        row = try #require(try JobStore.job(db, id: id))
        #expect(row.status == .succeeded && row.finishedAt != nil && row.runAt == nil && row.lockedBy == nil)
        #expect(try JobStore.results(db, jobIds: [id]).map(\.file.data) == [[9, 9]])
        #expect(try JobStore.events(db, jobId: id).last?.detail == "done")
    }

    @Test func factsAreStoredTypedAndReadBack() throws {
        let id = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        let job = try claimed()
        let hash = keccak256([1]), tx = keccak256([2])
        let node = Address(bytes: [UInt8](repeating: 0xEE, count: 20))
        let facts = JobFacts(taskType: 1, taskHash: hash, cap: 3, vramLimit: 8, feeWei: BigUInt(10).power(30), walletAddress: wallet,
                             chainId: 10_000, txHash: tx, txBlockNumber: 12, taskId: 99,
                             taskDeadline: Date(timeIntervalSince1970: 2_000_000_000), resultNode: node, abortReason: "x",
                             stamps: Set(JobStamp.allCases))
        #expect(try JobStore.apply(db, .advance(to: .fetch, facts: facts, note: "facts"), to: job, worker: "w"))
        let row = try #require(try JobStore.job(db, id: id))
        #expect(row.taskType == 1 && row.taskHash == hash && row.cap == 3 && row.vramLimit == 8 && row.feeWei == BigUInt(10).power(30))
        #expect(row.walletAddress == wallet && row.chainId == 10_000 && row.txHash == tx && row.txBlockNumber == 12 && row.taskId == 99)
        #expect(row.taskDeadline == Date(timeIntervalSince1970: 2_000_000_000) && row.resultNode == node && row.abortReason == "x")
        #expect(row.txSignedAt != nil && row.txMinedAt != nil && row.argsUploadedAt != nil && row.taskQueuedAt != nil && row.taskFinishedAt != nil)
    }

    @Test func recordingATransactionReservesTheNonceStoresTheBytesAndIsFenced() throws {
        let id = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        let job = try claimed()
        let stored = try JobStore.storeSigned(db, draft(), facts: JobFacts(feeWei: 5, stamps: [.txSigned]), note: "signed", for: job,
                                         worker: "w", sign: fakeSign)
        #expect(stored.nonce == 3 && stored.raw == [0xF8, 3] && stored.value == 5 && stored.gasPrice == 7)
        #expect(try JobStore.nextNonce(db, wallet: wallet) == 4)
        var row = try #require(try JobStore.job(db, id: id))
        #expect(row.txNonce == 3 && row.txHash == stored.hash && row.feeWei == 5 && row.lockedBy == "w" && row.txSignedAt != nil)
        #expect(try JobStore.transactions(db, of: row, purpose: .createTask) == [stored])
        // A replacement keeps the nonce and takes none from the wallet.
        let replacement = try JobStore.storeSigned(db, draft(replacing: 3), facts: JobFacts(), note: "replaced", for: row, worker: "w", sign: fakeSign)
        #expect(try replacement.nonce == 3 && (JobStore.nextNonce(db, wallet: wallet)) == 4)
        row = try #require(try JobStore.job(db, id: id))
        #expect(try JobStore.transactions(db, of: row, purpose: .createTask).count == 2)
        // Once the lease is gone nothing is stored and no nonce is spent.
        try steal(row)
        #expect(throws: LeaseLost.self) {
            try JobStore.storeSigned(db, draft(), facts: JobFacts(), note: "late", for: row, worker: "w", sign: fakeSign)
        }
        #expect(try JobStore.nextNonce(db, wallet: wallet) == 4)
        #expect(try db.query("SELECT count(*) FROM crynux.job_transactions")[0].get(0, as: Int64.self) == 2)
    }

    @Test func observationsAreRecordedAndTheWalletNeverGoesBack() throws {
        _ = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        let job = try claimed()
        let stored = try JobStore.storeSigned(db, draft(), facts: JobFacts(), note: "signed", for: job, worker: "w", sign: fakeSign)
        var seen = Observations()
        seen.sent = [stored.hash, stored.hash]
        seen.mined = [(stored.hash, 44, true)]
        seen.walletNonce = (wallet, 1, 2)
        try JobStore.recordObservations(db, seen)
        let row = try db.query("SELECT send_count, mined_block, mined_status FROM crynux.job_transactions WHERE tx_hash = $1", [stored.hash.hex])[0]
        #expect(try row.get("send_count", as: Int.self) == 2 && (row.get("mined_block", as: Int64.self)) == 44)
        #expect(try row.get("mined_status", as: Bool.self))
        #expect(try JobStore.nextNonce(db, wallet: wallet) == 4)
        seen = Observations()
        seen.walletNonce = (wallet, 1, 9)
        try JobStore.recordObservations(db, seen)
        #expect(try JobStore.nextNonce(db, wallet: wallet) == 9)
    }

    @Test func aStageThatNeedsATaskIdIsNotARetryTarget() throws {
        let id = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        try JobStore.apply(db, .fail(reason: "mined without TaskPending", retryFrom: .poll), to: try claimed(), worker: "w")
        guard case .refused(let reason) = try JobStore.retry(db, id: id) else {
            Issue.record("retry was not refused")
            return
        }
        #expect(reason.contains("cannot be retried from poll: it has no task id"))
        #expect(try JobStore.job(db, id: id)?.status == .failed)
    }

    @Test func theSchemaRefusesValuesNoJobCanHave() throws {
        let id = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        for assignment in ["task_id = -5", "vram_limit = 0", "fee_wei = 'NaN'", "fee_wei_override = 'NaN'", "tx_nonce = -1",
                           "task_hash = 'nope'", "wallet_address = '0xABC'"] {
            let error = try #require(throws: PostgresError.self) { try db.execute("UPDATE crynux.jobs SET \(assignment) WHERE id = $1", [id]) }
            #expect(error.sqlState == "23514", "\(assignment)")
        }
    }

    @Test func aRowNoStageCanReadFailsWithTheReasonAndTheOthersAreClaimed() throws {
        // A row from before the CHECKs (they are NOT VALID for old rows), or written around them.
        try db.execute("ALTER TABLE crynux.jobs DROP CONSTRAINT jobs_task_id_positive")
        let poison = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        let fine = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        try db.execute("UPDATE crynux.jobs SET task_id = -5 WHERE id = $1", [poison])
        #expect { try JobStore.job(db, id: poison) } throws: { ($0 as? PostgresError)?.description.contains("task_id") == true }
        let claimed = try JobStore.claim(db, worker: "w", limit: 10, leaseSeconds: 60)
        #expect(claimed.map(\.id) == [fine])
        let row = try db.query("SELECT status, last_error, locked_by FROM crynux.jobs WHERE id = $1", [poison])[0]
        #expect(try row.get("status", as: String.self) == "failed")
        #expect(try row.get("last_error", as: String.self).contains("cannot be read"))
        #expect(try row.isNull("locked_by"))
    }

    @Test func aClaimCarriesTheArgumentsOnlyToTheStagesThatUseThem() throws {
        let id = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        #expect(try claimed().taskArgs == args)
        for stage in JobStage.allCases {
            try db.execute("UPDATE crynux.jobs SET stage = $2, locked_until = NULL WHERE id = $1", [id, stage.rawValue])
            let job = try claimed()
            // (validate: a Lithium validation group creates two more tasks with the same arguments)
            #expect((job.taskArgs != nil) == [.create, .upload, .validate].contains(stage), "\(stage)")
        }
    }

    // MARK: the pipeline definition and the SQL agree

    @Test func theSchemaAgreesWithThePipelineDefinition() throws {
        let stages = Set(JobStage.allCases.map(\.rawValue))
        // Both CHECKs name exactly the pipeline's stages.
        let checks = try db.query("""
            SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint
            WHERE conrelid = 'crynux.jobs'::regclass AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%stage%'
            """).map { try $0.get("def", as: String.self) }
        #expect(checks.count == 2)
        for check in checks {
            let quoted = Set(check.split(separator: "'").enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) })
            #expect(quoted == stages, "\(check)")
        }
        // The stored claim rank is the pipeline's, stage by stage.
        let id = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args))
        for stage in JobStage.allCases {
            try db.execute("UPDATE crynux.jobs SET stage = $2 WHERE id = $1", [id, stage.rawValue])
            let rank = try db.query("SELECT stage_rank FROM crynux.jobs WHERE id = $1", [id])[0].get(0, as: Int.self)
            #expect(rank == stage.claimRank, "\(stage)")
        }
        // Claims use the rank through the due index.
        let index = try db.query("SELECT indexdef FROM pg_indexes WHERE schemaname = 'crynux' AND indexname = 'jobs_due_idx'")[0]
            .get(0, as: String.self)
        #expect(index.contains("priority DESC, stage_rank DESC, run_at") && index.contains("WHERE (status = 'pending'::text)"))
        // Each chain stage hands over to the next; only the last ends the job. Both profiles'
        // stages are claimed closest to done first.
        #expect(JobStage.chainStages.dropLast().allSatisfy { $0.next != nil } && JobStage.chainStages.last?.next == nil)
        #expect(JobStage.validate.next == nil)
        for stages in [JobStage.chainStages, JobStage.lithiumStages] {
            #expect(stages.map(\.claimRank) == stages.map(\.claimRank).sorted() && Set(stages).count == stages.count)
        }
    }
}
