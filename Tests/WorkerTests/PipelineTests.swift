import Foundation
import JobQueue
import Postgres
import TestSupport
import Testing

/// End to end against PostgreSQL and the shared local network (scripts/test starts both).
@Suite("Pipeline end to end")
struct PipelineTests {
    @Test func eightyJobsThreeWorkersOneWallet() throws {
        let harness = try PipelineHarness(devnet: try Devnet.shared())
        let db = try harness.db()
        for i in 0..<60 {
            try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: PipelineHarness.sdArgs(images: 1 + i % 4, prompt: "scene \(i) <&> ✓")))
        }
        for i in 0..<20 {
            try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("question \(i): what is \(i) + \(i)?")))
        }
        let logs = try Devnet.fillingTheSharedQueue { try harness.runWorkersUntilIdle(count: 3, timeout: 300) }

        let jobs = try harness.jobs()
        #expect(jobs.count == 80)
        let notDone = jobs.filter { $0.status != .succeeded }
        #expect(notDone.isEmpty, "not succeeded: \(notDone.map { "\($0.id) \($0.status) \($0.stage) \($0.lastError ?? "")" })\n\(logs.suffix(3000))")

        // Every stored result is byte for byte what the simulated nodes uploaded.
        for job in jobs {
            let taskId = try #require(job.taskId)
            let expected = try harness.devnet.uploadedDigests(taskId: taskId)
            let rows = try db.query("SELECT result_index, content_type, sha256 FROM crynux.job_results WHERE job_id = $1 ORDER BY result_index", [job.id])
            let wanted = job.kind == "sd" ? Int(job.cap ?? 0) : 1
            #expect(rows.count == wanted, "job \(job.id)")
            #expect(expected.count == wanted, "job \(job.id)")
            for row in rows {
                let index: Int = try row.get("result_index")
                #expect(try sha256Hex(row) == expected[index], "job \(job.id) result \(index)")
                #expect(try row.get("content_type", as: String.self) == (job.kind == "sd" ? "image/png" : "application/json"))
            }
        }
        // Exactly one paid task per job, and no transaction beyond those.
        let sent = try db.query("SELECT count(*) FROM crynux.job_transactions")[0].get(0, as: Int64.self)
        let why = sent == 80 ? "" : try harness.historyOfJobsWithSeveralTransactions(logs: logs)
        #expect(try harness.taskPendingCount() == 80, "\(why)")
        #expect(sent == 80, "\(why)")
        #expect(try harness.chainNonce() == 80)
        let walletNonce = try db.query("SELECT next_nonce FROM crynux.wallets")[0].get(0, as: Int64.self)
        #expect(walletNonce == 80)
        // Distinct task ids, each job's history complete.
        #expect(Set(jobs.compactMap(\.taskId)).count == 80)
        let stagesSeen = try db.query("SELECT DISTINCT to_stage FROM crynux.job_events").map { try $0.get("to_stage", as: String.self) }
        #expect(Set(stagesSeen) == ["create", "upload", "poll", "fetch"])
    }

    @Test func invalidArgumentsFailWithTheFieldAndSpendNothing() throws {
        let harness = try PipelineHarness(devnet: try Devnet.shared())
        let db = try harness.db()
        let cases: [(kind: String, args: String, field: String)] = [
            ("sd", "not json", "JSON"),
            ("sd", "[1,2]", "object"),
            ("sd", #"{"prompt":"x","task_config":{"num_images":1}}"#, "base_model"),
            ("sd", #"{"base_model":"m","task_config":{"num_images":1}}"#, "prompt"),
            ("sd", #"{"base_model":"m","prompt":"x"}"#, "task_config"),
            ("sd", #"{"base_model":"m","prompt":"x","task_config":{"num_images":0}}"#, "task_config.num_images"),
            ("sd", #"{"base_model":"m","prompt":"x","task_config":{"num_images":11}}"#, "task_config.num_images"),
            ("sd", #"{"base_model":"m","prompt":"x","task_config":{"num_images":1,"steps":101}}"#, "task_config.steps"),
            ("sd", #"{"base_model":"m","prompt":"x","task_config":{"num_images":1,"cfg":"high"}}"#, "task_config.cfg"),
            ("sd", #"{"base_model":"","prompt":"x","task_config":{"num_images":1}}"#, "base_model"),
            ("sd", #"{"base_model":"m","prompt":"x","task_config":{"num_images":true}}"#, "task_config.num_images"),
            ("gpt", #"{"messages":[{"role":"user","content":"hi"}]}"#, "model"),
            ("gpt", #"{"model":"m","messages":[{"role":"robot","content":"hi"}]}"#, "messages[0].role"),
            ("gpt", #"{"model":"m","messages":[{"role":"user"}]}"#, "messages[0].content"),
            ("gpt", #"{"model":"m","messages":[{"role":"user","content":"hi"}],"dtype":"int3"}"#, "dtype"),
        ]
        for c in cases { try JobStore.submit(db, JobSubmission(kind: c.kind, taskArgs: c.args)) }
        let logs = try harness.runWorkersUntilIdle()
        let jobs = try harness.jobs()
        #expect(jobs.count == cases.count)
        for (job, c) in zip(jobs, cases) {
            #expect(job.status == .failed, "\(c.args): \(job.status)\n\(logs.suffix(2000))")
            let error = job.lastError ?? ""
            #expect(error.contains("invalid task arguments"), "\(c.args): \(error)")
            #expect(error.contains(c.field), "\(c.args) should name \(c.field): \(error)")
            #expect(job.txNonce == nil && job.txHash == nil)
        }
        #expect(try harness.chainNonce() == 0)
        #expect(try db.query("SELECT count(*) FROM crynux.job_transactions")[0].get(0, as: Int64.self) == 0)
    }

    @Test func revertingCreateFailsWithTheRevertReason() throws {
        // With a fixed gas limit the transaction is mined and reverts: the reason comes from the replay.
        let mined = try PipelineHarness(devnet: try Devnet.shared())
        let id = try JobStore.submit(try mined.db(), JobSubmission(kind: "sd", taskArgs: PipelineHarness.sdArgs(images: 1), taskTypeOverride: 7))
        try mined.runWorkersUntilIdle(extra: ["--gas-limit", "2000000"])
        let job = try #require(try JobStore.job(try mined.db(), id: id))
        #expect(job.status == .failed)
        #expect(job.lastError?.contains("createTask reverted: Invalid task type") == true, "\(job.lastError ?? "")")
        #expect(job.retryStage == .create)
        #expect(job.txHash != nil && job.txBlockNumber != nil)
        #expect(try mined.chainNonce() == 1)
        #expect(try mined.taskPendingCount() == 0)

        // The reverted task is certainly dead, so a retry may pay for a new one; with the bad
        // override removed it succeeds, and the old reverted transaction does not confuse it.
        try mined.db().execute("UPDATE crynux.jobs SET task_type_override = NULL WHERE id = $1", [id])
        #expect(try JobStore.retry(try mined.db(), id: id) == .requeued(from: .create))
        try mined.runWorkersUntilIdle(extra: ["--gas-limit", "2000000"])
        let retried = try #require(try JobStore.job(try mined.db(), id: id))
        #expect(retried.status == .succeeded, "\(retried.lastError ?? "")")
        #expect(retried.txNonce == 1)
        #expect(try mined.taskPendingCount() == 1)
        #expect(try mined.db().query("SELECT count(*) FROM crynux.job_transactions WHERE job_id = $1", [id])[0].get(0, as: Int64.self) == 2)

        // With gas estimation the node refuses it before anything is signed: no money moves.
        let estimated = try PipelineHarness(devnet: try Devnet.shared())
        let id2 = try JobStore.submit(try estimated.db(), JobSubmission(kind: "sd", taskArgs: PipelineHarness.sdArgs(images: 1), taskTypeOverride: 7))
        try estimated.runWorkersUntilIdle()
        let job2 = try #require(try JobStore.job(try estimated.db(), id: id2))
        #expect(job2.status == .failed)
        #expect(job2.lastError?.contains("Invalid task type") == true, "\(job2.lastError ?? "")")
        #expect(job2.lastError?.contains("no transaction was sent") == true)
        #expect(try estimated.chainNonce() == 0)
    }

    @Test func abortedTaskFailsWithTheOnChainReason() throws {
        let harness = try PipelineHarness(devnet: try Devnet.shared())
        let id = try JobStore.submit(try harness.db(), JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("please devnet:abort")))
        try harness.runWorkersUntilIdle()
        let job = try #require(try JobStore.job(try harness.db(), id: id))
        #expect(job.status == .failed)
        #expect(job.abortReason == "Task error reported")
        #expect(job.lastError?.contains("aborted on chain: Task error reported") == true, "\(job.lastError ?? "")")
        // The task is dead, so a retry may create a new one.
        #expect(job.retryStage == .create)
        #expect(try JobStore.retry(try harness.db(), id: id) == .requeued(from: .create))
    }

    @Test func aRunningWorkerPrunesFinishedJobsPastTheirRetention() throws {
        let harness = try PipelineHarness(devnet: try Devnet.shared())
        let id = try JobStore.submit(try harness.db(), JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("kept briefly")))
        let worker = try harness.startWorker(name: "pruner", extra: ["--prune-succeeded-older-than", "1s", "--prune-interval", "1"])
        defer { worker.signal(SIGTERM); _ = worker.wait(timeout: 30) }
        #expect(try harness.waitUntil(timeout: 60) { try JobStore.job(try harness.db(), id: id)?.status == .succeeded }, "\(worker.output)")
        #expect(try harness.waitUntil(timeout: 30) { try JobStore.job(try harness.db(), id: id) == nil }, "\(worker.output)")
        #expect(worker.output.contains("pruned 1 finished job(s)"))
    }

    @Test func sigtermStopsAnIdleWorkerCleanly() throws {
        let harness = try PipelineHarness(devnet: try Devnet.shared())
        let worker = try harness.startWorker(name: "term")
        #expect(worker.waitForOutput(containing: "started:", timeout: 60), "\(worker.output)")
        worker.signal(SIGTERM)
        #expect(worker.wait(timeout: 30) == 0, "\(worker.output)")
        #expect(worker.output.contains("stopped"))
    }

    @Test func eip1559TransactionsWorkToo() throws {
        let harness = try PipelineHarness(devnet: try Devnet.shared())
        let db = try harness.db()
        try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: PipelineHarness.sdArgs(images: 2, prompt: "type two")))
        try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("type two")))
        try harness.runWorkersUntilIdle(extra: ["--eip1559"])
        #expect(try harness.jobs().allSatisfy { $0.status == .succeeded })
        let firstBytes = try db.query("SELECT get_byte(raw_tx, 0) AS b FROM crynux.job_transactions").map { try $0.get("b", as: Int32.self) }
        #expect(firstBytes == [2, 2])
        #expect(try harness.taskPendingCount() == 2)
    }

    @Test func aWrongChainIdStopsTheWorkerBeforeAnythingIsSent() throws {
        let harness = try PipelineHarness(devnet: try Devnet.shared())
        try JobStore.submit(try harness.db(), JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("wrong chain")))
        let worker = try harness.startWorker(name: "wrong-chain", extra: ["--chain-id", "1"])
        let status = worker.wait(timeout: 30)
        #expect(status != nil && status != 0)
        #expect(worker.output.contains("not the configured chain 1"), "\(worker.output)")
        #expect(try harness.chainNonce() == 0)
        #expect(try harness.jobs().first?.status == .pending)
    }
}
