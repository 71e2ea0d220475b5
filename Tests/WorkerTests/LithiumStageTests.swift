import BigInt
import Crynux
import Ethereum
import Foundation
import JobQueue
import Postgres
import Testing
import TestSupport
@testable import Worker

/// The Lithium stages in-process against real PostgreSQL and a scripted Relay: every branch that
/// moves money, and the rule that a request is durable before it is sent.
@Suite("Lithium stages in-process", .serialized)
struct LithiumStageTests {
    static let cnx = BigUInt(10).power(18)

    /// Runs the job until it leaves `stage` (or `limit` runs pass).
    @discardableResult
    func run(_ h: LithiumHarness, _ id: Int64, whileIn stage: JobStage, limit: Int = 6) throws -> Job {
        var job = try h.job(id)
        for _ in 0..<limit where job.stage == stage && job.status == .pending {
            job = try h.runOnce(id)
        }
        return job
    }

    @Test func aJobWalksCreatePollValidateFetchAndPaysOneTask() throws {
        let h = try LithiumHarness()
        let seed = try h.seed(selecting: false)
        h.relay.script { $0.seeds = [seed] }
        let id = try h.submit()
        var job = try h.runOnce(id)
        // One run: the task is stored, then created.
        #expect(job.stage == .poll && job.networkProfile == "lithium")
        let tasks = try h.tasks(id)
        #expect(tasks.count == 1 && tasks[0].createdAt != nil && tasks[0].preparedAt != nil)
        #expect(job.relayCommitment == tasks[0].commitment)
        #expect(tasks[0].commitment == LithiumTaskRequest.commitment(taskId: tasks[0].taskId, nonce: tasks[0].nonce))
        #expect(tasks[0].taskFee == 2 * 2 * Self.cnx, "2 images at 2 CNX")
        #expect(tasks[0].modelIds == ["base:crynux-ai/stable-diffusion-v1-5"])
        #expect(h.relay.funds == 996 * Self.cnx)

        job = try h.runOnce(id)
        #expect(job.stage == .poll, "still queued")
        h.relay.setAll(.started)
        job = try h.runOnce(id)
        #expect(job.stage == .poll)
        h.relay.setAll(.scoreReady)
        job = try h.runOnce(id)
        #expect(job.stage == .validate)
        job = try h.runOnce(id)
        #expect(job.stage == .poll, "validated: \(h.story(id))")
        let validated = try h.tasks(id)[0]
        #expect(validated.vrfSelected == false && validated.validatedAt != nil)
        let proof = try #require(validated.vrfProof)
        #expect(ECVRF.verify(publicKey: h.wallet.key.publicKey, alpha: try #require(validated.samplingSeed), proof: proof) != nil)
        #expect(h.relay.read { $0.validations } == [[validated.commitment]])

        h.relay.setAll(.endSuccess)
        job = try h.runOnce(id)
        #expect(job.stage == .fetch)
        job = try h.runOnce(id)
        #expect(job.status == .succeeded)
        let results = try h.db.query("SELECT result_index FROM crynux.job_results WHERE job_id = $1 ORDER BY result_index", [id])
        #expect(results.count == 2)
        #expect(h.relay.read { $0.createsSent } == 1 && h.relay.taskCount == 1)

        // The history view sums what the Relay Account paid for the job.
        let history = try h.db.query("SELECT fee_wei::text AS fee, relay_tasks FROM crynux.job_history WHERE job_id = $1", [id])[0]
        #expect(try history.get("fee", as: String.self) == (4 * Self.cnx).description)
        let timing = try h.db.query("SELECT outcome, create_duration >= interval '0' AS c, upload_duration = interval '0' AS u, "
                                    + "fetch_duration IS NOT NULL AS f FROM crynux.job_history WHERE job_id = $1", [id])[0]
        #expect(try timing.get("outcome", as: String.self) == "succeeded")
        #expect(try timing.get("c", as: Bool.self) && timing.get("u", as: Bool.self) && timing.get("f", as: Bool.self))
    }

    @Test func aLostCreateAnswerIsAdoptedNotPaidAgain() throws {
        let h = try LithiumHarness()
        h.relay.script { $0.loseNextCreateAnswer = true }
        let id = try h.submit()
        var job = try h.runOnce(id)
        #expect(job.stage == .create && job.lastError?.contains("timed out") == true)
        job = try h.runOnce(id)
        #expect(job.stage == .poll, "\(h.story(id))")
        #expect(h.relay.read { $0.createsSent } == 2 && h.relay.taskCount == 1)
        #expect(h.relay.funds == 996 * Self.cnx, "charged once")
        #expect(try h.details(id).contains { $0.contains("already created") && $0.contains("adopted") })
    }

    @Test func aRestoredDatabaseDerivesTheSameTaskAndAdoptsIt() throws {
        let h = try LithiumHarness()
        let id = try h.submit()
        let job = try h.runOnce(id)
        #expect(job.stage == .poll)
        let first = try h.tasks(id)[0].commitment
        // The database goes back to before the create: the job pending in create, no task row.
        try h.db.execute("DELETE FROM crynux.relay_tasks WHERE job_id = $1", [id])
        try h.db.execute("""
            UPDATE crynux.jobs SET stage = 'create', relay_commitment = NULL, network_profile = NULL, wallet_address = NULL
            WHERE id = $1
            """, [id])
        let again = try h.runOnce(id)
        #expect(again.stage == .poll)
        #expect(try h.tasks(id)[0].commitment == first)
        #expect(h.relay.taskCount == 1 && h.relay.funds == 996 * Self.cnx)
    }

    @Test func invalidArgumentsFailTheJobAndNothingIsSent() throws {
        let h = try LithiumHarness()
        let id = try h.submit(#"{"base_model":"crynux-ai/stable-diffusion-v1-5","prompt":"x","task_config":{"num_images":0}}"#)
        let job = try h.runOnce(id)
        #expect(job.status == .failed)
        #expect(job.lastError?.contains("nothing was sent") == true, "\(job.lastError ?? "")")
        let tasks = try h.tasks(id)
        #expect(h.relay.calls("create") == 0 && tasks.isEmpty)
    }

    @Test func anEmptyRelayAccountMakesTheJobWaitUnpaidUntilFunded() throws {
        let h = try LithiumHarness()
        h.relay.script { $0.balance = Self.cnx }
        let id = try h.submit()
        var job = try h.runOnce(id)
        #expect(job.status == .pending && job.stage == .create)
        #expect(job.lastError?.hasPrefix(CreateStage.waitingForFunds) == true && job.lastError?.contains("1 CNX") == true,
                "\(job.lastError ?? "")")
        job = try h.runOnce(id)
        #expect(job.stage == .create && h.relay.taskCount == 0)
        // One commitment for all the tries: the stored request is sent again.
        #expect(try h.tasks(id).count == 1)
        h.relay.script { $0.balance = 100 * Self.cnx }
        job = try h.runOnce(id)
        #expect(job.stage == .poll && h.relay.taskCount == 1)
    }

    @Test func aRefusedCreateFailsSayingNothingWasPaid() throws {
        let h = try LithiumHarness()
        h.relay.script { $0.createVerdict = .rejected("task_version: Invalid task version") }
        let id = try h.submit()
        let job = try h.runOnce(id)
        #expect(job.status == .failed && job.lastError?.contains("nothing was paid") == true)
        #expect(job.lastError?.contains("Invalid task version") == true)
    }

    @Test func aTaskQueuedPastTheQueueTimeoutIsCancelledForItsRefund() throws {
        let h = try LithiumHarness { $0.queueTimeout = 0 }
        let id = try h.submit()
        var job = try h.runOnce(id)
        #expect(job.stage == .poll)
        job = try h.runOnce(id)
        #expect(job.status == .failed, "\(h.story(id))")
        #expect(job.lastError?.contains("fee refunded") == true)
        #expect(h.relay.funds == 1000 * Self.cnx)
        let task = try h.tasks(id)[0]
        #expect(task.cancelSentAt != nil && task.endedAt != nil && task.abort == .creatorCancelled)
    }

    @Test func anOperatorCancelOfAQueuedTaskCancelsItAndEndsTheJobCancelled() throws {
        let h = try LithiumHarness()
        let id = try h.submit()
        _ = try h.runOnce(id)
        #expect(try JobStore.cancel(h.db, id: id) == .requested)
        let job = try h.runOnce(id)
        #expect(job.status == .cancelled, "\(h.story(id))")
        #expect(h.relay.funds == 1000 * Self.cnx)
    }

    @Test func aCancelBeforeTheRelayAnsweredAsksWhetherItHasTheTask() throws {
        let h = try LithiumHarness()
        // The answer of the create is lost, and the operator cancels: the Relay has the task, so
        // it is adopted and cancelled while queued, for its refund.
        h.relay.script { $0.loseNextCreateAnswer = true }
        let lost = try h.submit()
        _ = try h.runOnce(lost)
        #expect(try JobStore.cancel(h.db, id: lost) == .requested)
        var job = try h.runOnce(lost)
        #expect(job.stage == .poll, "\(h.story(lost))")
        job = try h.runOnce(lost)
        #expect(job.status == .cancelled && h.relay.funds == 1000 * Self.cnx, "\(h.story(lost))")
        // The Relay never got it (the request failed before it arrived): nothing to settle.
        h.relay.script { $0.createVerdict = .insufficientBalance }
        let unsent = try h.submit(PipelineHarness.sdArgs(images: 1))
        _ = try h.runOnce(unsent)
        #expect(try JobStore.cancel(h.db, id: unsent) == .requested)
        job = try h.runOnce(unsent)
        #expect(job.status == .cancelled, "\(h.story(unsent))")
        #expect(h.relay.read { $0.createsSent } == 2, "the cancelled job's request was not sent again")
    }

    @Test func aCancelAfterTheTaskStartedLetsItRunAndKeepsItsResults() throws {
        let h = try LithiumHarness()
        let seed = try h.seed(selecting: false)
        h.relay.script { $0.seeds = [seed] }
        let id = try h.submit()
        _ = try h.runOnce(id)
        h.relay.setAll(.started)
        #expect(try JobStore.cancel(h.db, id: id) == .requested)
        var job = try h.runOnce(id)
        #expect(job.status == .pending && job.stage == .poll)
        h.relay.setAll(.scoreReady)
        job = try run(h, id, whileIn: .poll)
        job = try run(h, id, whileIn: .validate)
        h.relay.setAll(.endSuccess)
        job = try run(h, id, whileIn: .poll)
        job = try run(h, id, whileIn: .fetch)
        #expect(job.status == .succeeded)
    }

    @Test(arguments: [(LithiumAbortReason.timeout, "fee refunded"), (.creatorValidationTimeout, "no refund")])
    func anAbortedTaskFailsTheJobSayingWhatBecameOfTheFee(reason: LithiumAbortReason, words: String) throws {
        let h = try LithiumHarness()
        let id = try h.submit()
        _ = try h.runOnce(id)
        h.relay.set(try h.tasks(id)[0].commitment, .endAborted, abort: reason)
        let job = try h.runOnce(id)
        #expect(job.status == .failed && job.lastError?.contains(reason.name) == true && job.lastError?.contains(words) == true,
                "\(job.lastError ?? "")")
        #expect(job.stage == .poll)
        // The analysts' view names the Relay's reason and the refund it implies.
        let history = try h.db.query("SELECT outcome, refunded_wei::text AS back, create_duration IS NOT NULL AS c, upload_duration = interval '0' AS u, "
                                     + "task_duration IS NOT NULL AS t FROM crynux.job_history WHERE job_id = $1", [id])[0]
        #expect(try history.get("outcome", as: String.self) == "aborted: \(reason.name)")
        #expect(try history.get("back", as: String.self) == (reason.refunded ? (4 * Self.cnx).description : "0"))
        #expect(try history.get("c", as: Bool.self) && history.get("u", as: Bool.self) && history.get("t", as: Bool.self))
        // A retry pays for a new task (a new attempt, a new task id).
        #expect(try JobStore.retry(h.db, id: id) == .requeued(from: .create))
        _ = try h.runOnce(id)
        let tasks = try h.tasks(id)
        #expect(tasks.count == 2 && tasks[1].attempt == 1 && tasks[1].taskId != tasks[0].taskId)
    }

    @Test func aLostValidationAnswerIsRecognisedWhenTheRelayMovedOn() throws {
        let h = try LithiumHarness()
        let seed = try h.seed(selecting: false)
        h.relay.script { $0.seeds = [seed]; $0.loseNextValidateAnswer = true }
        let id = try h.submit()
        _ = try h.runOnce(id)
        h.relay.setAll(.scoreReady)
        var job = try run(h, id, whileIn: .poll)
        job = try h.runOnce(id)
        #expect(job.stage == .validate && job.lastError?.contains("timed out") == true)
        job = try h.runOnce(id)
        #expect(job.stage == .poll, "\(h.story(id))")
        #expect(h.relay.read { $0.validations.count } == 1)
    }

    @Test func aSelectedSDTaskIsValidatedAsAGroupOfThree() throws {
        let h = try LithiumHarness()
        let selecting = try h.seed(selecting: true)
        h.relay.script { $0.seeds = [selecting] }
        let id = try h.submit()
        _ = try h.runOnce(id)
        h.relay.setAll(.scoreReady)
        var job = try run(h, id, whileIn: .poll)
        #expect(job.stage == .validate)
        job = try h.runOnce(id)
        // The proof, then the two members stored, then created: all in one run.
        var tasks = try h.tasks(id)
        #expect(tasks.count == 3 && tasks[0].vrfSelected == true, "\(h.story(id))")
        #expect(Set(tasks.map(\.taskId)).count == 1 && Set(tasks.map(\.nonce)).count == 3)
        #expect(tasks[1...].allSatisfy { $0.createdAt != nil && $0.requiredGPU == "" })
        #expect(h.relay.funds == (1000 - 12) * Self.cnx, "three tasks paid")
        // The members run; the group is validated in the Relay's sequence order.
        job = try h.runOnce(id)
        #expect(job.stage == .validate && h.relay.read { $0.validations }.isEmpty)
        h.relay.setAll(.scoreReady)
        job = try h.runOnce(id)
        #expect(job.stage == .poll, "\(h.story(id))")
        tasks = try h.tasks(id)
        let sequences = tasks.map { h.relay.task(hex: $0.commitment)!.sequence }
        let expected = zip(sequences, tasks.map(\.commitment)).sorted { $0.0 < $1.0 }.map(\.1)
        #expect(h.relay.read { $0.validations } == [expected])
        // The Relay picks one member's results.
        h.relay.set(tasks[0].commitment, .endInvalidated)
        h.relay.set(tasks[1].commitment, .endGroupRefund)
        h.relay.set(tasks[2].commitment, .endGroupSuccess)
        job = try h.runOnce(id)
        #expect(job.stage == .fetch && job.relayCommitment == tasks[2].commitment)
        job = try h.runOnce(id)
        #expect(job.status == .succeeded)
    }

    /// An SD job whose task the VRF selects, run until its task is ScoreReady and the job in validate.
    private func selectedSDJobAtValidate(_ h: LithiumHarness) throws -> Int64 {
        let selecting = try h.seed(selecting: true)
        h.relay.script { $0.seeds = [selecting] }
        let id = try h.submit()
        _ = try h.runOnce(id)
        h.relay.setAll(.scoreReady)
        _ = try run(h, id, whileIn: .poll)
        return id
    }

    @Test func aLostGroupValidationAnswerIsRecognisedNotWaitedOnForever() throws {
        let h = try LithiumHarness()
        let id = try selectedSDJobAtValidate(h)
        _ = try h.runOnce(id)  // proof, members stored and created
        h.relay.setAll(.scoreReady)
        h.relay.script { $0.loseNextValidateAnswer = true }
        var job = try h.runOnce(id)
        #expect(job.stage == .validate && job.lastError?.contains("timed out") == true, "\(h.story(id))")
        // The Relay moved the group on before the worker looked again.
        let tasks = try h.tasks(id)
        h.relay.set(tasks[0].commitment, .endGroupRefund)
        job = try h.runOnce(id)
        #expect(job.stage == .poll, "\(h.story(id))")
        #expect(h.relay.read { $0.validations.count } == 1, "the group was validated once")
        #expect(try h.tasks(id).allSatisfy { $0.validatedAt != nil })
    }

    @Test func aGroupThatWaitedForFundsPastTheValidationTimeoutCreatesNoMembers() throws {
        let h = try LithiumHarness()
        let id = try selectedSDJobAtValidate(h)
        h.relay.script { $0.balance = 0 }
        var job = try h.runOnce(id)  // proof, members stored; their creates are refused for funds
        #expect(job.stage == .validate && job.lastError?.hasPrefix(CreateStage.waitingForFunds) == true, "\(h.story(id))")
        // The Relay's validation timeout passes before the account is funded.
        let first = try h.tasks(id)[0]
        h.relay.set(first.commitment, .endAborted, abort: .creatorValidationTimeout)
        h.relay.script { $0.balance = 100 * Self.cnx }
        job = try h.runOnce(id)
        #expect(job.status == .failed && job.lastError?.contains("never sent") == true, "\(h.story(id))")
        #expect(h.relay.taskCount == 1 && h.relay.funds == 100 * Self.cnx, "no member was created or paid")
        let outcome = try h.db.query("SELECT outcome FROM crynux.job_history WHERE job_id = $1", [id])[0].get(0, as: String.self)
        #expect(outcome == "aborted: CreatorValidationTimeout")
    }

    @Test func aSelectedLLMTaskPinsItsGroupToTheFirstTasksGPU() throws {
        let h = try LithiumHarness()
        let selecting = try h.seed(selecting: true)
        h.relay.script { $0.seeds = [selecting] }
        let id = try h.submit(kind: "gpt", PipelineHarness.gptArgs("hello"))
        _ = try h.runOnce(id)
        let firstTask = try h.tasks(id)[0]
        #expect(firstTask.minVram == 24 && firstTask.taskFee == 5 * Self.cnx)
        h.relay.setAll(.scoreReady)
        _ = try run(h, id, whileIn: .poll)
        _ = try h.runOnce(id)
        let tasks = try h.tasks(id)
        #expect(tasks.count == 3)
        #expect(tasks[1...].allSatisfy { $0.requiredGPU == "NVIDIA GeForce RTX 4090" && $0.requiredGPUVram == 24 })
        #expect(h.relay.read { $0.requests[tasks[1].commitment]?.requiredGPU } == "NVIDIA GeForce RTX 4090")
    }

    @Test func aGroupMemberThatAbortsHasItsQueuedSiblingCancelled() throws {
        let h = try LithiumHarness()
        let id = try selectedSDJobAtValidate(h)
        _ = try h.runOnce(id)
        let tasks = try h.tasks(id)
        #expect(tasks.count == 3)
        h.relay.set(tasks[1].commitment, .endAborted, abort: .timeout)
        var job = try h.runOnce(id)
        // Member 2 was queued: cancelled for its refund; the group is then validated as it stands.
        #expect(h.relay.read { $0.cancels } == [tasks[2].commitment])
        job = try run(h, id, whileIn: .validate)
        #expect(job.stage == .poll, "\(h.story(id))")
        #expect(h.relay.read { $0.validations.count } == 1)
        #expect(h.relay.funds == (1000 - 4) * Self.cnx, "two refunds")
    }

    /// The Relay tasks of a claim's jobs are read in one statement: each job still decides on
    /// its own tasks (one task ready, two queued: only its job moves on).
    @Test func theJobsOfOneClaimEachDecideOnTheirOwnRelayTasks() throws {
        let h = try LithiumHarness()
        let seed = try h.seed(selecting: false)
        h.relay.script { $0.seeds = [seed, seed, seed] }
        let ids = try (1...3).map { _ in try h.submit() }
        _ = try h.runOnce(ids[0])
        let tasks = try ids.map { try h.tasks($0) }
        #expect(tasks.allSatisfy { $0.count == 1 && $0[0].createdAt != nil }, "one created task each")
        #expect(try JobStore.relayTasks(h.db, jobIds: ids + [-1]) == Dictionary(uniqueKeysWithValues: zip(ids, tasks)))
        h.relay.script { $0.tasks[tasks[1][0].commitment]?.status = .scoreReady }
        _ = try h.runOnce(ids[0])
        #expect(try ids.map { try h.job($0).stage } == [.poll, .validate, .poll])
        _ = try h.runOnce(ids[0])
        #expect(try ids.map { try h.job($0).stage } == [.poll, .poll, .poll], "validated")
        #expect(h.relay.read { $0.validations } == [[tasks[1][0].commitment]])
    }

    @Test func aTaskTheRelayForgetsIsNeverPaidForAgainByItself() throws {
        let h = try LithiumHarness()
        let id = try h.submit()
        _ = try h.runOnce(id)
        h.relay.script { $0.forgotten = Set($0.tasks.keys) }
        let job = try run(h, id, whileIn: .poll, limit: 8)
        #expect(job.status == .failed && job.lastError?.contains("no longer knows") == true, "\(job.lastError ?? "")")
        #expect(h.relay.read { $0.createsSent } == 1)
    }

    @Test func theRequestIsStoredBeforeItIsSent() throws {
        let h = try LithiumHarness()
        h.relay.script { $0.createVerdict = nil }
        let id = try h.submit()
        // A relay that fails every create at transport: the row exists after the first try.
        final class Down: LithiumRelay, @unchecked Sendable {
            let wallet: Address
            init(_ wallet: Address) { self.wallet = wallet }
            func create(_ request: LithiumTaskRequest) throws(RelayError) -> LithiumCreateOutcome { throw RelayError("down", isTransport: true) }
            func task(_ commitment: [UInt8]) throws(RelayError) -> LithiumLookup { throw RelayError("down", isTransport: true) }
            func selectedNode(_ commitment: [UInt8]) throws(RelayError) -> LithiumSelectedNodeLookup { throw RelayError("down") }
            func validate(commitments: [[UInt8]], taskId: [UInt8], proof: [UInt8], publicKey: [UInt8]) throws(RelayError) -> LithiumValidateOutcome {
                throw RelayError("down")
            }
            func cancel(_ commitment: [UInt8]) throws(RelayError) -> LithiumCancelOutcome { throw RelayError("down") }
            func result(_ commitment: [UInt8], index: Int, kind: TaskKind) throws(RelayError) -> DownloadOutcome { throw RelayError("down") }
            func balance() throws(RelayError) -> BigUInt { throw RelayError("down") }
        }
        let down = Pipeline(relays: [h.wallet.address: Down(h.wallet.address)], wallets: [h.wallet], config: h.config,
                            worker: LithiumHarness.worker, log: WorkerLog(name: "t", quiet: true))
        let jobs = try JobStore.claim(h.db, worker: LithiumHarness.worker, wallets: [h.wallet.address], limit: 1, leaseSeconds: 60)
        down.run(h.db, jobs, stopping: { false })
        let stored = try h.tasks(id)
        #expect(stored.count == 1 && stored[0].createdAt == nil)
        // The next try sends exactly that request.
        _ = try h.runOnce(id)
        let sent = try #require(h.relay.read { $0.requests[stored[0].commitment] })
        #expect(sent.nonce == stored[0].nonce && sent.taskFee == stored[0].taskFee && sent.modelIds == stored[0].modelIds)
    }
}
