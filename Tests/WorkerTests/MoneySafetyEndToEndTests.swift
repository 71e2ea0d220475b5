import BigInt
import Ethereum
import Foundation
import JobQueue
import Postgres
import TestSupport
import Testing

/// Money safety end to end: a backlog that never evicts its own tasks, several wallets, lost
/// records, bounded fee bumps, filled nonces, refunds. On a network of its own with the default
/// nodes and queue, one test at a time (they turn global knobs).
@Suite("Money safety end to end", .serialized)
final class MoneySafetyEndToEndTests {
    let devnet: Devnet

    init() throws { devnet = try Devnet.startPrivate(["--task-duration-ms", "300", "--results-upload-delay-ms", "100"]) }
    deinit { devnet.stop() }

    @Test func aJobSignedByOneWalletIsContinuedOnlyWithThatWallet() throws {
        let harness = try PipelineHarness(devnet: devnet)
        let second = PrivateKey.random()
        try devnet.fund(second.address.checksummed)
        try devnet.configure(["tx_mine_delay_ms": 4000])
        defer { _ = try? devnet.configure(["tx_mine_delay_ms": 0]) }
        let id = try JobStore.submit(try harness.db(), JobSubmission(kind: "sd", taskArgs: PipelineHarness.sdArgs(images: 1, prompt: "two keys")))
        let first = try harness.startWorker(name: "a", keys: [harness.key], extra: ["--lease-seconds", "3"])
        #expect(try harness.waitUntilBroadcast(jobId: id), "\(first.output)")
        first.signal(SIGKILL)
        _ = first.wait(timeout: 10)
        // The second worker holds both keys and replaces quickly: the replacement is signed by the job's wallet.
        try harness.runWorkersUntilIdle(timeout: 180, keys: [second, harness.key], extra: ["--replace-after", "1", "--rebroadcast-after", "0.5"])
        let job = try #require(try JobStore.job(try harness.db(), id: id))
        #expect(job.status == .succeeded, "\(job.lastError ?? "")")
        #expect(job.walletAddress == harness.key.address)
        // `show` lists the job's wallet and every transaction with its purpose.
        let show = try Products.runWorker(["show", String(id)], environment: ["DATABASE_URL": harness.database.url])
        #expect(show.status == 0 && show.output.contains("wallet") && show.output.contains(harness.key.address.checksummed))
        #expect(show.output.contains("create ") && show.output.contains("replacement"), "\(show.output)")
        #expect(try harness.taskPendingCount(of: harness.key.address) + harness.taskPendingCount(of: second.address) == 1)
        for wallet in [harness.key.address, second.address] {
            let used = try harness.db().query("SELECT count(DISTINCT nonce) FROM crynux.job_transactions WHERE wallet_address = $1",
                                              [wallet.bytes.hex])[0].get(0, as: Int64.self)
            #expect(try harness.chainNonce(of: wallet) == UInt64(used), "\(wallet)")
        }
    }

    @Test func aTaskWhoseRecordsWereLostIsAdoptedAndNotPaidAgain() throws {
        let harness = try PipelineHarness(devnet: devnet)
        try devnet.configure(["tx_mine_delay_ms": 1500])
        defer { _ = try? devnet.configure(["tx_mine_delay_ms": 0]) }
        let id = try JobStore.submit(try harness.db(), JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("restored")))
        let first = try harness.startWorker(name: "lost")
        #expect(try harness.waitUntilBroadcast(jobId: id), "\(first.output)")
        first.signal(SIGKILL)
        _ = first.wait(timeout: 10)
        #expect(try harness.waitUntil { try harness.chainNonce() == 1 })
        // As a lost commit would: the transaction, the job's on-chain facts and the nonce it took are gone.
        let db = try harness.db()
        try db.execute("DELETE FROM crynux.job_transactions WHERE job_id = $1", [id])
        try db.execute("""
            UPDATE crynux.jobs SET tx_nonce = NULL, tx_hash = NULL, wallet_address = NULL, chain_id = NULL, fee_wei = NULL,
                task_hash = NULL, task_type = NULL, cap = NULL, vram_limit = NULL, tx_signed_at = NULL,
                locked_by = NULL, locked_until = NULL WHERE id = $1
            """, [id])
        try db.execute("UPDATE crynux.wallets SET next_nonce = 0")
        let logs = try harness.runWorkersUntilIdle(timeout: 120)
        let job = try #require(try JobStore.job(db, id: id))
        #expect(job.status == .succeeded, "\(job.lastError ?? "")\n\(logs.suffix(2000))")
        #expect(try harness.taskPendingCount() == 1)
        #expect(try JobStore.events(db, jobId: id).contains { $0.detail.hasPrefix("adopted task") })
    }

    /// A failover to a lagging replica, as the workers see it: the database goes back to a dump
    /// taken while jobs were signing, under three running workers sharing one wallet. Jobs whose
    /// createTasks were mined lost every record of them; they sign again at nonces the chain has
    /// used, are unsigned, and get their lost tasks back by reconciliation: every job ends with
    /// the one task it paid for, on the chain's own record.
    @Test func aDatabaseRestoredUnderRunningWorkersPaysNoTaskTwice() throws {
        let harness = try PipelineHarness(devnet: devnet)
        let db = try harness.db()
        let count = 12
        for i in 0..<count { try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("failover \(i)"))) }
        let workers = try (0..<3).map { try harness.startWorker(name: "w\($0)", extra: ["--concurrency", "2"]) }
        defer { for worker in workers where worker.process.isRunning { worker.signal(SIGKILL) } }
        let logs = { workers.map(\.output).joined().suffix(4000) }
        let versions = try FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")
        let bin = "/usr/lib/postgresql/\(try #require(versions.sorted { $0.compare($1, options: .numeric) == .orderedAscending }.last))/bin"
        let backup = FileManager.default.temporaryDirectory.appendingPathComponent("failover-\(UInt32.random(in: 0...UInt32.max)).dump").path
        defer { try? FileManager.default.removeItem(atPath: backup) }
        // The replica's copy: taken while the first jobs sign.
        #expect(try harness.waitUntil(timeout: 60) { try harness.jobs().filter { $0.txNonce != nil }.count >= 3 }, "\(logs())")
        let (dumped, dumpOutput) = try Devnet.runProcess("\(bin)/pg_dump", ["-Fc", "-n", "crynux", "-f", backup, harness.database.url])
        #expect(dumped == 0, "\(dumpOutput)")
        #expect(try harness.waitUntil(timeout: 120) { try harness.jobs().allSatisfy { $0.taskId != nil } }, "\(logs())")
        let (restored, restoreOutput) = try Devnet.runProcess("\(bin)/pg_restore", ["--clean", "--if-exists", "-n", "crynux", "-d", harness.database.url, backup])
        #expect(restored == 0, "\(restoreOutput)")
        #expect(try harness.waitUntil(timeout: 180) { try harness.jobs().allSatisfy { $0.status != .pending } }, "\(logs())")
        let jobs = try harness.jobs()
        #expect(jobs.allSatisfy { $0.status == .succeeded }, "\(jobs.filter { $0.status != .succeeded }.map { "\($0.id): \($0.lastError ?? "")" })\n\(logs())")
        #expect(Set(jobs.compactMap(\.taskId)).count == count)
        #expect(try harness.taskPendingCount() == count, "a task was paid twice\n\(logs())")
        #expect(workers.map(\.output).joined().contains("reconciled"), "\(logs())")
        for worker in workers { worker.signal(SIGTERM) }
        for worker in workers { #expect(worker.wait(timeout: 30) == 0) }
    }

    @Test(arguments: [false, true])
    func feeBumpsStayUnderTheCeilingAndAreNeverUnderpriced(eip1559: Bool) throws {
        let harness = try PipelineHarness(devnet: devnet)
        // Transactions sit in the pool for a while: every replacement must beat the one there.
        try devnet.configure(["tx_mine_delay_ms": 6000])
        defer { _ = try? devnet.configure(["tx_mine_delay_ms": 0]) }
        let price = try harness.rpc.gasPrice()
        let ceiling = price * 2 * (eip1559 ? 2 : 1)
        let id = try JobStore.submit(try harness.db(), JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("bumped \(eip1559)")))
        let logs = try harness.runWorkersUntilIdle(timeout: 180, extra: ["--replace-after", "1", "--rebroadcast-after", "0.5",
                                                                         "--max-gas-price-wei", ceiling.description]
                                                                 + (eip1559 ? ["--eip1559"] : []))
        let db = try harness.db()
        #expect(try JobStore.job(db, id: id)?.status == .succeeded)
        let txs = try JobStore.allTransactions(db, jobId: id)
        #expect(txs.count >= 2, "no replacement happened:\n\(logs.suffix(2000))")
        #expect(txs.allSatisfy { $0.gasPrice <= ceiling })
        #expect(txs.allSatisfy { $0.refusal == nil }, "\(txs.compactMap(\.refusal))")
        #expect(!logs.contains("underpriced"))
        #expect(try harness.taskPendingCount() == 1)
    }
}

/// The same promise when money must come back or a wallet must not stall: funds, dropped and
/// underpriced cancels, deadlines, refunds. A suite of its own (each test starts its own network)
/// so that it runs beside the one above instead of after it.
@Suite("Money safety end to end: refunds and deadlines", .serialized)
final class RefundsEndToEndTests {
    let devnet: Devnet

    init() throws { devnet = try Devnet.startPrivate(["--task-duration-ms", "300", "--results-upload-delay-ms", "100"]) }
    deinit { devnet.stop() }

    @Test func aCreateTheWalletCannotPayWaitsUnsignedWhileCheaperJobsRunThenGoesOnOnceFunded() throws {
        let harness = try PipelineHarness(devnet: devnet)
        let poor = PrivateKey.random()
        try devnet.fund(poor.address.checksummed, wei: BigUInt(10).power(18).description)
        let db = try harness.db()
        // Its value fits in the balance, its value plus gas does not: the node would refuse it.
        let greedy = try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("greedy"),
                                                          feeWei: (BigUInt(10).power(18) - BigUInt(10).power(14)).description))
        let worker = try harness.startWorker(name: "poor", keys: [poor], extra: ["--funds-retry", "1"])
        defer { if worker.process.isRunning { worker.signal(SIGKILL) } }
        #expect(try harness.waitUntil { try JobStore.job(db, id: greedy)?.lastError?.hasPrefix("waiting for funds") == true },
                "\(worker.output.suffix(2000))")
        // A cheaper job of the same wallet goes ahead; the greedy one used no nonce.
        let normal = try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("after the greedy one")))
        #expect(try harness.waitUntil(timeout: 90) { try JobStore.job(db, id: normal)?.status == .succeeded }, "\(worker.output.suffix(2000))")
        var job = try #require(try JobStore.job(db, id: greedy))
        #expect(job.status == .pending && job.txNonce == nil && job.stageAttempts == 0)
        #expect(try harness.chainNonce(of: poor.address) == 1)
        // Funded, it goes on by itself.
        try devnet.fund(poor.address.checksummed)
        #expect(try harness.waitUntil(timeout: 90) { try JobStore.job(db, id: greedy)?.status == .succeeded }, "\(worker.output.suffix(2000))")
        job = try #require(try JobStore.job(db, id: greedy))
        #expect(job.feeWei == BigUInt(10).power(18) - BigUInt(10).power(14))
        #expect(try harness.chainNonce(of: poor.address) == 2)
        worker.signal(SIGTERM)
        #expect(worker.wait(timeout: 30) == 0)
    }

    @Test func aDroppedCancelTaskDoesNotStallTheWallet() throws {
        let harness = try PipelineHarness(devnet: devnet)
        try devnet.configure(["task_timeout_s": 3, "watchdog_delay_ms": -1])
        defer { _ = try? devnet.configure(["task_timeout_s": 900, "watchdog_delay_ms": 5000, "tx_drop_rate": 0]) }
        let db = try harness.db()
        let stuck = try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("devnet:stuck")))
        let worker = try harness.startWorker(name: "canceller", extra: ["--cancel-grace", "1", "--replace-after", "2", "--rebroadcast-after", "0.5"])
        #expect(try harness.waitUntil { try JobStore.job(db, id: stuck)?.stage == .poll }, "\(worker.output)")
        // Every cancelTask (and replacement) from now on is accepted and forgotten.
        try devnet.configure(["tx_drop_rate": 1])
        #expect(try harness.waitUntil {
            try db.query("SELECT count(*) FROM crynux.job_transactions WHERE job_id = $1 AND purpose = 'cancel_task' AND send_count > 0",
                         [stuck])[0].get(0, as: Int64.self) > 0
        }, "\(worker.output)")
        // Meanwhile the nodes cancel the task themselves: the job ends, its cancelTask is still unmined.
        try devnet.configure(["watchdog_delay_ms": 0])
        #expect(try harness.waitUntil { try JobStore.job(db, id: stuck)?.status == .failed }, "\(worker.output)")
        try devnet.configure(["tx_drop_rate": 0])
        let next = try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("after the dropped cancel")))
        #expect(try harness.waitUntil(timeout: 60) { try JobStore.job(db, id: next)?.status == .succeeded }, "\(worker.output)")
        worker.signal(SIGTERM)
        #expect(worker.wait(timeout: 30) == 0)
    }

    /// The price rises after the cancelTask was signed: it waits in the pool below the new price.
    /// Re-sent every half second, it is still bumped once the replacement delay since its
    /// signature has passed, so the refund is claimed and the wallet's later nonces move on.
    @Test func aCancelTaskSignedBelowARisingGasPriceIsBumpedAndTheRefundClaimed() throws {
        let harness = try PipelineHarness(devnet: devnet)
        try devnet.configure(["tx_mine_delay_ms": 1500])
        defer { _ = try? devnet.configure(["tx_mine_delay_ms": 0, "min_gas_price_wei": 0]) }
        let db = try harness.db()
        let id = try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("no node fits"), vramLimit: 80))
        let worker = try harness.startWorker(name: "cancel", extra: ["--queue-timeout", "2", "--replace-after", "3", "--rebroadcast-after", "0.5"])
        defer { if worker.process.isRunning { worker.signal(SIGKILL) } }
        func cancels() throws -> [StoredTransaction] {
            try JobStore.allTransactions(db, jobId: id).filter { $0.purpose == .cancelTask }
        }
        #expect(try harness.waitUntil(timeout: 60) { try cancels().first?.sendCount ?? 0 > 0 }, "\(worker.output.suffix(2000))")
        let first = try #require(try cancels().first)
        try devnet.configure(["min_gas_price_wei": Int(first.gasPrice * 2)])
        #expect(try harness.waitUntil(timeout: 60) { try JobStore.job(db, id: id)?.status == .failed }, "\(worker.output.suffix(3000))")
        let job = try #require(try JobStore.job(db, id: id))
        #expect(job.abortReason == "Task Cancelled", "\(job.lastError ?? "")")
        let all = try cancels()
        #expect(all.count >= 2 && all.allSatisfy { $0.nonce == first.nonce }, "\(all.map(\.gasPrice))")
        // The chain mined a bump at the new price, not the first bytes.
        let mined = try all.filter { try harness.rpc.getTransactionReceipt($0.hash) != nil }
        #expect(mined.count == 1 && mined.allSatisfy { $0.gasPrice >= first.gasPrice * 2 }, "\(mined.map(\.gasPrice))")
        worker.signal(SIGTERM)
        #expect(worker.wait(timeout: 30) == 0)
    }

    /// A job that waited in create (here for funds) longer than `--create-deadline` signs its
    /// createTask and gets the whole deadline for it: between blocks a fill would replace it in
    /// the pool (the devnet keeps transactions replaceable until the block is sealed, as geth does).
    @Test func aCreateSignedLongAfterItsJobEnteredCreateIsMinedNotFilled() throws {
        let harness = try PipelineHarness(devnet: devnet)
        let poor = PrivateKey.random()
        try devnet.configure(["block_time_ms": 4000])
        defer { _ = try? devnet.configure(["block_time_ms": 0]) }
        let db = try harness.db()
        let id = try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("long wait for funds")))
        let worker = try harness.startWorker(name: "late", keys: [poor], extra: ["--funds-retry", "1", "--create-deadline", "5"])
        defer { if worker.process.isRunning { worker.signal(SIGKILL) } }
        #expect(try harness.waitUntil(timeout: 30) {
            guard let job = try JobStore.job(db, id: id), job.lastError?.hasPrefix("waiting for funds") == true else { return false }
            return Date().timeIntervalSince(job.stageEnteredAt) > 6
        }, "\(worker.output.suffix(2000))")
        try devnet.fund(poor.address.checksummed)
        // Once the createTask's fate is known, blocks come at once again (the rest is not under test).
        #expect(try harness.waitUntil(timeout: 60) { try JobStore.job(db, id: id).map { $0.stage != .create || $0.status != .pending } ?? false },
                "\(worker.output.suffix(3000))")
        try devnet.configure(["block_time_ms": 0])
        #expect(try harness.waitUntil(timeout: 120) { try JobStore.job(db, id: id)?.status != .pending }, "\(worker.output.suffix(3000))")
        let job = try #require(try JobStore.job(db, id: id))
        #expect(job.status == .succeeded, "\(job.lastError ?? "")")
        #expect(try JobStore.allTransactions(db, jobId: id).map(\.purpose) == [.createTask])
        worker.signal(SIGTERM)
        #expect(worker.wait(timeout: 30) == 0)
    }

    @Test func aTaskNoNodeCanRunIsCancelledAfterTheQueueTimeoutWithItsFeeBack() throws {
        let harness = try PipelineHarness(devnet: devnet)
        let fee = BigUInt(10).power(18)
        let id = try JobStore.submit(try harness.db(), JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("too big"),
                                                                     feeWei: fee.description, vramLimit: 80))
        let before = try harness.rpc.getBalance(harness.key.address)
        let logs = try harness.runWorkersUntilIdle(timeout: 120, extra: ["--queue-timeout", "3"])
        let job = try #require(try JobStore.job(try harness.db(), id: id))
        #expect(job.status == .failed && job.abortReason == "Task Cancelled", "\(job.lastError ?? "")\n\(logs.suffix(2000))")
        #expect(job.lastError?.hasPrefix("queued on chain for longer than 3 s") == true)
        let spent = before - (try harness.rpc.getBalance(harness.key.address))
        #expect(spent < BigUInt(10).power(16), "spent \(spent) wei")
    }

    @Test func anOperatorCancelAfterCreationClaimsTheRefund() throws {
        let harness = try PipelineHarness(devnet: devnet)
        try devnet.configure(["nodes": 0])
        defer { _ = try? devnet.configure(["nodes": 12]) }
        let db = try harness.db()
        let id = try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("cancel me"),
                                                      feeWei: BigUInt(10).power(18).description))
        let before = try harness.rpc.getBalance(harness.key.address)
        let worker = try harness.startWorker(name: "refund", extra: ["--exit-when-idle"])
        #expect(try harness.waitUntil { try JobStore.job(db, id: id)?.taskQueuedAt != nil }, "\(worker.output)")
        #expect(try JobStore.cancel(db, id: id) == .cancelled || JobStore.job(db, id: id)?.cancelRequested == true)
        #expect(worker.wait(timeout: 60) == 0, "\(worker.output)")
        let job = try #require(try JobStore.job(db, id: id))
        #expect(job.status == .cancelled && job.abortReason == "Task Cancelled", "\(job.lastError ?? "")\n\(worker.output.suffix(2000))")
        let spent = before - (try harness.rpc.getBalance(harness.key.address))
        #expect(spent < BigUInt(10).power(16), "spent \(spent) wei")
    }

    @Test func anIdleWorkerDoesNotSpinOnAJobLeasedByADeadWorker() throws {
        let harness = try PipelineHarness(devnet: devnet)
        let db = try harness.db()
        try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("leased elsewhere")))
        _ = try JobStore.claim(db, worker: "dead", limit: 1, leaseSeconds: 600)
        let worker = try harness.startWorker(name: "idle", extra: ["--keeper-interval", "10"])
        #expect(worker.waitForOutput(containing: "started:", timeout: 60), "\(worker.output)")
        let atStart = try #require(Self.statements(worker.output, after: "started:"))
        Thread.sleep(forTimeInterval: 5)  // the measurement window, not a wait for a state
        worker.signal(SIGTERM)
        #expect(worker.wait(timeout: 30) == 0)
        let atStop = try #require(Self.statements(worker.output, after: "stopped ("))
        // Releasing leases at the stop costs one statement more.
        #expect(atStop - atStart < 50, "\(atStop - atStart) statements in 5 s")
    }

    /// The "N database statements" figure on the log line that starts with `marker`.
    static func statements(_ log: String, after marker: String) -> Int? {
        guard let line = log.split(separator: "\n").first(where: { $0.contains(marker) }),
              let range = line.range(of: " database statements") else { return nil }
        return Int(line[..<range.lowerBound].split(whereSeparator: { !$0.isNumber }).last ?? "")
    }
}

/// 300 jobs at once against the default nodes (12) and queue (50): the backlog waits in
/// PostgreSQL, never on chain. A network of its own, so that it runs beside the suite above.
@Suite("A backlog never evicts its own tasks (end to end)")
final class BacklogEndToEndTests {
    let devnet: Devnet

    init() throws { devnet = try Devnet.startPrivate(["--task-duration-ms", "300", "--results-upload-delay-ms", "100"]) }
    deinit { devnet.stop() }

    private func fees(_ db: PostgresConnection, _ sql: String) throws -> BigUInt {
        BigUInt(try db.query(sql)[0].get(0, as: String.self)) ?? 0
    }

    @Test func aBacklogOfThreeHundredJobsNeverEvictsItsOwnTasks() throws {
        let harness = try PipelineHarness(devnet: devnet)
        let db = try harness.db()
        for i in 0..<300 {
            if i % 4 == 3 {
                try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("backlog \(i)")))
            } else {
                try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: PipelineHarness.sdArgs(images: 1 + i % 2, prompt: "backlog \(i)")))
            }
        }
        let logs = try harness.runWorkersUntilIdle(count: 3, timeout: 900, extra: ["--concurrency", "4", "--admission-retry", "1"])
        let jobs = try harness.jobs()
        let notDone = jobs.filter { $0.status != .succeeded }
        #expect(notDone.isEmpty, "\(notDone.prefix(5).map { "\($0.id) \($0.status) \($0.lastError ?? "")" })\n\(logs.suffix(2000))")
        #expect(try !harness.abortReasons().contains("Task fee is too low"))
        #expect(jobs.allSatisfy { $0.recreations == 0 })
        #expect(try harness.taskPendingCount() == 300)
        #expect(try harness.chainNonce() == 300)
        // The fees on chain are exactly the jobs' fees: each paid once.
        let paid = try fees(db, "SELECT coalesce(sum(value_wei), 0)::text FROM crynux.job_transactions WHERE purpose = 'create_task' AND mined_status")
        #expect(paid == (try fees(db, "SELECT sum(fee_wei)::text FROM crynux.jobs")))
    }
}
