import BigInt
import Ethereum
import Foundation
import JobQueue
import Postgres
import TestSupport
import Testing

/// Worker processes against the local Lithium network (the live network's Relay, its Relay
/// Accounts and VRF validation, checked by independent Python code). The network scripts/test
/// started serves this suite alone; tests that turn its knobs run one at a time and put them back.
/// Money is counted on the Relay's own ledger: every charge is a task some job row accounts for.
@Suite("Lithium end to end", .serialized)
struct LithiumEndToEndTests {
    let devnet: Devnet
    static let cnx = BigUInt(10).power(18)
    static let start = 1000 * cnx

    init() throws { devnet = try Devnet.sharedLithium() }

    func harness(balance: BigUInt = start) throws -> PipelineHarness {
        let harness = try PipelineHarness(devnet: devnet)
        try setBalance(harness, balance)
        return harness
    }

    /// Turns fault knobs on for this harness's wallet alone (the Relay client's devnet suite shares
    /// the network); `restore` puts them back.
    func faults(_ harness: PipelineHarness, _ knobs: [String: Any]) throws {
        try devnet.admin("POST", "/admin/lithium/fault_creators", ["addresses": [harness.key.address.checksummed]])
        try devnet.configure(knobs)
    }

    func restore(_ knobs: [String: Any]) {
        _ = try? devnet.configure(knobs)
        _ = try? devnet.admin("POST", "/admin/lithium/fault_creators", ["addresses": NSNull()])
    }

    func setBalance(_ harness: PipelineHarness, _ wei: BigUInt) throws {
        try devnet.admin("POST", "/admin/lithium/accounts/\(harness.key.address.checksummed)", ["balance": String(wei)])
    }

    /// The Relay Account's balance and its ledger's charges (type 4) and refunds (type 5).
    func account(_ harness: PipelineHarness) throws -> (balance: BigUInt, charges: [String: BigUInt], refunds: [String: BigUInt]) {
        let json = try #require(try devnet.admin("GET", "/admin/lithium/accounts/\(harness.key.address.checksummed)") as? [String: Any])
        let balance = try #require(BigUInt(json["balance"] as? String ?? ""))
        var charges: [String: BigUInt] = [:], refunds: [String: BigUInt] = [:]
        for event in json["events"] as? [[String: Any]] ?? [] {
            let reason = event["reason"] as? String ?? "", amount = BigUInt(event["amount"] as? String ?? "") ?? 0
            let commitment = String(reason.drop(while: { $0 != "-" }).dropFirst())
            switch (event["type"] as? NSNumber)?.intValue {
            case 4: charges[commitment] = amount
            case 5: refunds[commitment] = amount
            default: break
            }
        }
        return (balance, charges, refunds)
    }

    /// The tasks the jobs' rows say were created, with their fees.
    func createdTasks(_ db: PostgresConnection) throws -> [String: BigUInt] {
        try db.query("SELECT commitment, task_fee_wei::text AS fee FROM crynux.relay_tasks WHERE created_at IS NOT NULL").reduce(into: [:]) {
            $0[try $1.get("commitment", as: String.self)] = BigUInt(try $1.get("fee", as: String.self))
        }
    }

    /// Every charge on the Relay's ledger is a task a job row holds, at the fee the row says; the
    /// balance is the start less charges plus refunds.
    func expectMoneyAccountedFor(_ harness: PipelineHarness, start: BigUInt = start, _ context: String = "") throws {
        let db = try harness.db()
        let (balance, charges, refunds) = try account(harness)
        let created = try createdTasks(db)
        #expect(charges == created, "ledger charges vs rows \(context)")
        let spent = charges.values.reduce(BigUInt(0), +), back = refunds.values.reduce(BigUInt(0), +)
        #expect(balance + spent == start + back, "balance \(balance) spent \(spent) refunded \(back) \(context)")
        // The analysts' view agrees with the ledger.
        let view = try db.query("SELECT coalesce(sum(fee_wei), 0)::text AS fee, coalesce(sum(refunded_wei), 0)::text AS back FROM crynux.job_history")[0]
        let viewFee = BigUInt(try view.get("fee", as: String.self)), viewBack = BigUInt(try view.get("back", as: String.self))
        #expect(viewFee == spent && viewBack == back, "job_history \(context)")
    }

    /// Every succeeded job holds exactly the files of the Relay task that ended in success.
    func expectResultsMatch(_ harness: PipelineHarness, _ job: Job) throws {
        let db = try harness.db()
        let commitment = try #require(job.relayCommitment)
        let task = try #require(try devnet.admin("GET", "/admin/lithium/tasks/\(commitment.hex)") as? [String: Any])
        let files = (task["files"] as? [[String: Any]] ?? []).reduce(into: [Int: String]()) {
            $0[($1["index"] as? NSNumber)?.intValue ?? -1] = $1["sha256"] as? String
        }
        let rows = try db.query("SELECT result_index, sha256 FROM crynux.job_results WHERE job_id = $1 ORDER BY result_index", [job.id])
        #expect(rows.count == files.count && rows.count == (job.kind == "sd" ? Int(job.cap ?? 0) : 1), "job \(job.id)")
        for row in rows { #expect(try sha256Hex(row) == files[try row.get("result_index", as: Int.self)], "job \(job.id)") }
    }

    func tasksPerJob(_ db: PostgresConnection) throws -> [Int64: Int] {
        try db.query("SELECT job_id, count(*) AS n FROM crynux.relay_tasks WHERE created_at IS NOT NULL GROUP BY 1").reduce(into: [:]) {
            $0[try $1.get("job_id", as: Int64.self)] = Int(try $1.get("n", as: Int64.self))
        }
    }

    static func sdArgs(_ i: Int, images: Int = 1) -> String {
        #"{"base_model":"crynux-network/sdxl-turbo","prompt":"lithium \#(i)","task_config":{"num_images":\#(images),"steps":1,"seed":\#(i)}}"#
    }

    static func gptArgs(_ i: Int) -> String {
        #"{"model":"Qwen/Qwen2.5-7B","messages":[{"role":"user","content":"lithium \#(i)?"}],"generation_config":{"max_new_tokens":16},"seed":\#(i)}"#
    }

    // MARK: -

    @Test func manyJobsThroughThreeWorkersPayOneTaskEach() throws {
        let harness = try harness()
        let db = try harness.db()
        for i in 0..<12 { try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: Self.sdArgs(i, images: 1 + i % 3))) }
        for i in 0..<6 { try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: Self.gptArgs(i))) }
        let logs = try harness.runWorkersUntilIdle(count: 3, timeout: 300)
        let jobs = try harness.jobs()
        let notDone = jobs.filter { $0.status != .succeeded }
        #expect(notDone.isEmpty, "not succeeded: \(notDone.map { "\($0.id) \($0.status) \($0.stage) \($0.lastError ?? "")" })\n\(logs.suffix(3000))")
        for job in jobs where job.status == .succeeded {
            try expectResultsMatch(harness, job)
            #expect(job.networkProfile == "lithium")
        }
        // One task per job, or three when the VRF picked it for a validation group (1 %).
        let perJob = try tasksPerJob(db)
        #expect(perJob.count == 18 && perJob.values.allSatisfy { $0 == 1 || $0 == 3 }, "\(perJob)")
        try expectMoneyAccountedFor(harness)
        // Every validation went out: each task's row has its proof and the time it was validated.
        let unvalidated = try db.query("SELECT count(*) FROM crynux.relay_tasks WHERE member = 0 AND (vrf_proof IS NULL OR validated_at IS NULL)")[0]
            .get(0, as: Int64.self)
        #expect(unvalidated == 0)
    }

    @Test func aSelectedTaskIsValidatedWithTwoMoreAndTheJobGetsTheWinnersResults() throws {
        let harness = try harness()
        try devnet.admin("POST", "/admin/lithium/creator_keys", ["private_keys": [harness.key.hexForTests]])
        try devnet.configure(["vrf_select_share": 1])
        defer { _ = try? devnet.configure(["vrf_select_share": 0]) }
        let db = try harness.db()
        for i in 0..<2 { try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: Self.sdArgs(100 + i, images: 2))) }
        try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: Self.gptArgs(100)))
        let logs = try harness.runWorkersUntilIdle(count: 2, timeout: 300)
        let jobs = try harness.jobs()
        #expect(jobs.allSatisfy { $0.status == .succeeded }, "\(jobs.map { "\($0.id) \($0.status) \($0.lastError ?? "")" })\n\(logs.suffix(3000))")
        for job in jobs where job.status == .succeeded { try expectResultsMatch(harness, job) }
        let perJob = try tasksPerJob(db)
        #expect(perJob.values.allSatisfy { $0 == 3 } && perJob.count == 3, "\(perJob)")
        // The LLM group ran on the first task's GPU; the SD groups were not pinned (as the bridge does).
        let pins = try db.query("""
            SELECT j.kind, t.member, t.required_gpu FROM crynux.relay_tasks t JOIN crynux.jobs j ON j.id = t.job_id WHERE t.member > 0
            """)
        for row in pins {
            let kind: String = try row.get("kind"), gpu: String = try row.get("required_gpu")
            #expect(kind == "gpt" ? !gpu.isEmpty : gpu.isEmpty, "\(kind) member pinned to '\(gpu)'")
        }
        #expect(try db.query("SELECT count(*) FROM crynux.relay_tasks WHERE member = 0 AND vrf_selected")[0].get(0, as: Int64.self) == 3)
        try expectMoneyAccountedFor(harness)
    }

    @Test func lostAnswersNeverPayATaskTwice() throws {
        let harness = try harness()
        try faults(harness, ["relay_drop_answer_rate": 0.5])
        defer { restore(["relay_drop_answer_rate": 0]) }
        let db = try harness.db()
        for i in 0..<4 { try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: Self.sdArgs(200 + i))) }
        for i in 0..<2 { try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: Self.gptArgs(200 + i))) }
        let logs = try harness.runWorkersUntilIdle(count: 2, timeout: 300, extra: ["--retry-max", "1"])
        let jobs = try harness.jobs()
        #expect(jobs.allSatisfy { $0.status == .succeeded }, "\(jobs.map { "\($0.id) \($0.status) \($0.lastError ?? "")" })\n\(logs.suffix(3000))")
        #expect(logs.contains("adopted"), "no create answer was lost: the test did not test anything\n\(logs.suffix(2000))")
        try expectMoneyAccountedFor(harness)
        #expect(try tasksPerJob(db).values.allSatisfy { $0 == 1 || $0 == 3 })
    }

    @Test func aWorkerKilledMidFlightIsFinishedByAnotherWithoutASecondPayment() throws {
        let harness = try harness()
        try devnet.configure(["task_duration_ms": 3000])
        defer { _ = try? devnet.configure(["task_duration_ms": 1000]) }
        let db = try harness.db()
        for i in 0..<4 { try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: Self.sdArgs(300 + i))) }
        let doomed = try harness.startWorker(name: "doomed", extra: ["--lease-seconds", "3"])
        #expect(try harness.waitUntil(timeout: 60) {
            try db.query("SELECT count(*) FROM crynux.relay_tasks WHERE created_at IS NOT NULL")[0].get(0, as: Int64.self) >= 2
        }, "the first worker created nothing:\n\(doomed.output)")
        doomed.signal(SIGKILL)
        _ = doomed.wait(timeout: 10)
        let logs = try harness.runWorkersUntilIdle(count: 2, timeout: 300)
        let jobs = try harness.jobs()
        #expect(jobs.allSatisfy { $0.status == .succeeded }, "\(jobs.map { "\($0.id) \($0.status) \($0.lastError ?? "")" })\n\(logs.suffix(3000))")
        #expect(try tasksPerJob(db).values.allSatisfy { $0 == 1 || $0 == 3 })
        try expectMoneyAccountedFor(harness)
    }

    @Test func aTaskNoNodeCanRunIsCancelledAtTheQueueTimeoutForItsRefund() throws {
        let harness = try harness()
        let db = try harness.db()
        let id = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: Self.sdArgs(400), vramLimit: 80))
        let logs = try harness.runWorkersUntilIdle(timeout: 120, extra: ["--queue-timeout", "2"])
        let job = try #require(try JobStore.job(db, id: id))
        #expect(job.status == .failed && job.lastError?.contains("cancelled while queued, fee refunded") == true,
                "\(job.lastError ?? "")\n\(logs.suffix(2000))")
        let (balance, charges, refunds) = try account(harness)
        #expect(balance == Self.start && charges.count == 1 && refunds == charges)
        try expectMoneyAccountedFor(harness)
    }

    @Test func anEmptyRelayAccountMakesJobsWaitUnpaidUntilItIsFunded() throws {
        let harness = try harness(balance: 0)
        let db = try harness.db()
        let id = try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: Self.gptArgs(500)))
        let worker = try harness.startWorker(name: "waiting", extra: ["--exit-when-idle", "--funds-retry", "1", "--wallet-check-interval", "1"])
        #expect(try harness.waitUntil(timeout: 60) {
            try JobStore.job(db, id: id)?.lastError?.contains("nothing was charged") == true
        }, "\(worker.output)")
        #expect(try harness.waitUntil(timeout: 30) { worker.output.contains("is low on funds") }, "\(worker.output)")
        #expect(try account(harness).charges.isEmpty)
        try setBalance(harness, Self.start)
        #expect(worker.wait(timeout: 120) == 0, "\(worker.output)")
        #expect(try JobStore.job(db, id: id)?.status == .succeeded)
        try expectMoneyAccountedFor(harness)
    }

    @Test func aNodeThatReportsAnErrorFailsTheJobWithItsFeeRefunded() throws {
        let harness = try harness()
        try faults(harness, ["error_report_rate": 1])
        defer { restore(["error_report_rate": 0]) }
        let db = try harness.db()
        let id = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: Self.sdArgs(600)))
        let logs = try harness.runWorkersUntilIdle(timeout: 120)
        let job = try #require(try JobStore.job(db, id: id))
        #expect(job.status == .failed && job.lastError?.contains("refunded") == true, "\(job.lastError ?? "")\n\(logs.suffix(2000))")
        // The ErrorReported task was validated (the Relay wants a validation for it too).
        #expect(try db.query("SELECT count(*) FROM crynux.relay_tasks WHERE job_id = $1 AND validated_at IS NOT NULL", [id])[0]
            .get(0, as: Int64.self) >= 1)
        try expectMoneyAccountedFor(harness)
    }

    /// The money rule of a point-in-time restore: the database goes back to before the tasks were
    /// created while a worker runs. The jobs derive the same commitments again, the Relay answers
    /// "Task already uploaded", the tasks are adopted: the results come back, nothing is paid twice.
    @Test func aDatabaseRestoredUnderARunningWorkerPaysNoTaskTwice() throws {
        let harness = try harness()
        // No validation group: seeds the VRF leaves unselected (a group restored mid-flight loses
        // its members' records, a known gap; about 4 % of runs drew one and failed).
        try devnet.admin("POST", "/admin/lithium/creator_keys", ["private_keys": [harness.key.hexForTests]])
        try devnet.configure(["vrf_select_share": 1e-9])
        defer { _ = try? devnet.configure(["vrf_select_share": 0]) }
        let db = try harness.db()
        for i in 0..<3 { try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: Self.sdArgs(700 + i))) }
        try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: Self.gptArgs(700)))
        let versions = try FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")
        let bin = "/usr/lib/postgresql/\(try #require(versions.sorted { $0.compare($1, options: .numeric) == .orderedAscending }.last))/bin"
        let backup = FileManager.default.temporaryDirectory.appendingPathComponent("backup-\(UInt32.random(in: 0...UInt32.max)).dump").path
        defer { try? FileManager.default.removeItem(atPath: backup) }
        let (dumped, dumpOutput) = try Devnet.runProcess("\(bin)/pg_dump", ["-Fc", "-n", "crynux", "-f", backup, harness.database.url])
        #expect(dumped == 0, "\(dumpOutput)")

        let worker = try harness.startWorker(name: "steady", extra: ["--poll-interval", "0.3"])
        defer { worker.signal(SIGKILL); _ = worker.wait(timeout: 10) }
        let allDone = { try harness.jobs().allSatisfy { $0.status == .succeeded } }
        #expect(try harness.waitUntil(timeout: 120, allDone), "\(worker.output.suffix(3000))")
        let paid = try account(harness).charges
        #expect(paid.count == 4)

        // Back to the backup, under the running worker.
        let (restored, restoreOutput) = try Devnet.runProcess("\(bin)/pg_restore", ["--clean", "--if-exists", "-n", "crynux", "-d", harness.database.url, backup])
        #expect(restored == 0, "\(restoreOutput)")
        #expect(try harness.jobs().allSatisfy { $0.status == .pending && $0.relayCommitment == nil })
        #expect(try harness.waitUntil(timeout: 120, allDone), "\(worker.output.suffix(3000))")
        #expect(worker.output.contains("adopted"), "\(worker.output.suffix(2000))")
        #expect(try account(harness).charges == paid, "a task was paid twice")
        for job in try harness.jobs() { try expectResultsMatch(harness, job) }
        try expectMoneyAccountedFor(harness)
    }

    /// The real way money reaches a Relay Account: jobs wait unpaid while it is empty, and a CNX
    /// transfer to the Relay's deposit address lets them go on.
    @Test func aWalletToppedUpByADepositGoesOn() throws {
        let harness = try harness(balance: 0)
        let db = try harness.db()
        let id = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: Self.sdArgs(800)))
        let worker = try harness.startWorker(name: "topped-up", extra: ["--exit-when-idle", "--funds-retry", "1"])
        #expect(try harness.waitUntil(timeout: 60) { try JobStore.job(db, id: id)?.lastError?.contains("nothing was charged") == true },
                "\(worker.output)")
        let deposit = try #require(devnet.depositAddress.flatMap { Address(hex: $0) })
        let token = try #require(devnet.tokenContract.flatMap { Address(hex: $0) })
        try devnet.admin("POST", "/admin/cnx", ["address": harness.key.address.checksummed, "balance": String(10 * Self.cnx)])
        let transfer = try ABI.encodeCall("transfer(address,uint256)", [.address(deposit), .uint(10 * Self.cnx)])
        let tx = LegacyTransaction(nonce: try harness.rpc.getTransactionCount(harness.key.address), gasPrice: try harness.rpc.gasPrice(),
                                   gasLimit: 100_000, to: token, data: transfer, chainId: devnet.chainId)
        _ = try harness.rpc.sendRawTransaction(try tx.signed(with: harness.key).raw)
        #expect(worker.wait(timeout: 120) == 0, "\(worker.output.suffix(3000))")
        #expect(try JobStore.job(db, id: id)?.status == .succeeded)
        try expectMoneyAccountedFor(harness, start: 10 * Self.cnx)
    }

    @Test func anOperatorCancelOfAQueuedTaskGetsItsFeeBack() throws {
        let harness = try harness()
        let db = try harness.db()
        let id = try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: Self.gptArgs(900), vramLimit: 80))
        let worker = try harness.startWorker(name: "cancelled", extra: ["--exit-when-idle"])
        #expect(try harness.waitUntil(timeout: 60) { try JobStore.job(db, id: id)?.stage == .poll }, "\(worker.output)")
        #expect(try JobStore.cancel(db, id: id) == .requested)
        #expect(worker.wait(timeout: 60) == 0, "\(worker.output.suffix(3000))")
        #expect(try JobStore.job(db, id: id)?.status == .cancelled)
        let (balance, charges, refunds) = try account(harness)
        #expect(balance == Self.start && charges.count == 1 && refunds == charges)
        try expectMoneyAccountedFor(harness)
    }

    /// Relay faults that cannot be scoped to one wallet (500s before anything is done, answers
    /// that come late), with a worker killed in the middle: nothing is paid twice, nothing stuck.
    @Test func relayFaultsAndAKillLeaveEveryJobWithOnePaidTask() throws {
        try SharedNetworkKnobs.exclusively {
            let harness = try harness()
            let db = try harness.db()
            for i in 0..<4 { try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: Self.sdArgs(1000 + i, images: 2))) }
            for i in 0..<2 { try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: Self.gptArgs(1000 + i))) }
            let doomed = try harness.startWorker(name: "doomed", extra: ["--lease-seconds", "3", "--retry-max", "1"])
            #expect(doomed.waitForOutput(containing: "started:", timeout: 60), "\(doomed.output)")
            try devnet.configure(["relay_http500_rate": 0.3, "relay_stall_rate": 0.3, "relay_stall_ms": 1500])
            defer { _ = try? devnet.configure(["relay_http500_rate": 0, "relay_stall_rate": 0]) }
            #expect(try harness.waitUntil(timeout: 60) { try account(harness).charges.count >= 2 }, "\(doomed.output.suffix(2000))")
            doomed.signal(SIGKILL)
            _ = doomed.wait(timeout: 10)
            let logs = try harness.runWorkersUntilIdle(count: 2, timeout: 300, extra: ["--retry-max", "1", "--lease-seconds", "5"])
            let jobs = try harness.jobs()
            #expect(jobs.allSatisfy { $0.status == .succeeded }, "\(jobs.map { "\($0.id) \($0.status) \($0.lastError ?? "")" })\n\(logs.suffix(3000))")
            #expect(try tasksPerJob(db).values.allSatisfy { $0 == 1 || $0 == 3 })
            try expectMoneyAccountedFor(harness)
        }
    }

    /// kill -9 at the precise points where a request and its record part: the Relay holds the
    /// wallet's request there (`relay_hold`) until the test has killed the worker.
    /// - create:before: the task stored, its create never done (the Relay dropped it undone);
    /// - create:after: created and charged at the Relay, the answer never recorded;
    /// - validate:before / validate:after: mid-validation, the proof stored (a group of three
    ///   formed for validate:after), the validation not done / done but not recorded.
    /// A second worker finishes the job: one paid task (or its group), the same commitment.
    @Test(arguments: ["create:before", "create:after", "validate:before", "validate:after"])
    func aWorkerKilledAtAPrecisePointFinishesWithoutASecondPayment(point: String) throws {
        let harness = try harness()
        let group = point == "validate:after"
        try devnet.admin("POST", "/admin/lithium/creator_keys", ["private_keys": [harness.key.hexForTests]])
        try devnet.configure(["vrf_select_share": group ? 1 : 1e-9])  // chosen seeds: selected or not
        defer { _ = try? devnet.configure(["vrf_select_share": 0]) }
        try faults(harness, ["relay_hold": point])
        defer { restore(["relay_hold": ""]) }
        let db = try harness.db()
        let id = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: Self.sdArgs(1100 + point.count, images: 2)))
        let held = { () throws -> Int in
            let stats = try #require(try devnet.admin("GET", "/admin/stats") as? [String: Any])
            return ((stats["relay"] as? [String: Any])?["held"] as? NSNumber)?.intValue ?? -1
        }
        let doomed = try harness.startWorker(name: "doomed", extra: ["--lease-seconds", "3"])
        #expect(try harness.waitUntil(timeout: 90) { try held() >= 1 }, "no request was held at \(point):\n\(doomed.output.suffix(3000))")
        doomed.signal(SIGKILL)
        _ = doomed.wait(timeout: 10)

        // The state at the kill point, as the rows and the Relay tell it.
        let stored = try db.query("SELECT commitment, created_at IS NOT NULL AS created, vrf_proof IS NOT NULL AS proof, validated_at IS NOT NULL AS validated "
                                  + "FROM crynux.relay_tasks WHERE job_id = $1 AND member = 0", [id])
        #expect(stored.count == 1, "the task is stored before its create is sent")
        let commitment = try stored[0].get("commitment", as: String.self)
        let relayTask = try? devnet.admin("GET", "/admin/lithium/tasks/\(commitment)")
        switch point {
        case "create:before":
            #expect(try !stored[0].get("created", as: Bool.self))
            #expect(try harness.waitUntil(timeout: 10) { try held() == 0 }, "the Relay did not see the worker hang up")
            let after = try? devnet.admin("GET", "/admin/lithium/tasks/\(commitment)")
            #expect(after == nil, "the held create was done")
            #expect(try account(harness).charges.isEmpty)
        case "create:after":
            #expect(try !stored[0].get("created", as: Bool.self), "the answer was held: nothing to record yet")
            let charges = try account(harness).charges
            #expect(relayTask != nil && charges.count == 1)
        default:
            #expect(try stored[0].get("proof", as: Bool.self) && !stored[0].get("validated", as: Bool.self),
                    "the proof is stored before the validation is sent")
        }
        #expect(try harness.waitUntil(timeout: 10) { try held() == 0 }, "the Relay did not see the worker hang up")
        restore(["relay_hold": ""])

        let logs = try harness.runWorkersUntilIdle(timeout: 300)
        let job = try #require(try JobStore.job(db, id: id))
        #expect(job.status == .succeeded, "\(job.status) \(job.lastError ?? "")\n\(logs.suffix(3000))")
        try expectResultsMatch(harness, job)
        let perJob = try tasksPerJob(db)
        #expect(perJob[id] == (group ? 3 : 1), "\(perJob)")
        let sent = try db.query("SELECT commitment FROM crynux.relay_tasks WHERE job_id = $1 AND member = 0", [id]).map { try $0.get(0, as: String.self) }
        #expect(sent == [commitment], "the second worker sent the stored task, not a new one")
        try expectMoneyAccountedFor(harness, point)
    }
}
