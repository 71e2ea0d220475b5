import BigInt
import Crynux
import Ethereum
import Foundation
import JobQueue
import Postgres
import TestSupport
import Testing
@testable import Worker

/// Budgets and the per-job ceiling, in-process against real PostgreSQL: a payment is checked
/// against every budget covering its wallet at the moment it is signed (a createTask) or stored
/// before it is sent (a Relay task); the rest wait with nothing signed or sent.
@Suite("Budgets in-process")
struct BudgetStageTests {
    static let cnx = BigUInt(10).power(18)
    static func text(_ wei: BigUInt) -> String { JobQueue.cnx(wei) }

    /// What a stored createTask commits: value plus gas limit × price.
    static func committed(_ tx: StoredTransaction) -> BigUInt { tx.value + BigUInt(tx.gasLimit) * tx.gasPrice }

    /// What one single-image job's createTask commits on the scripted network, and its gas part.
    static func probe() throws -> (committed: BigUInt, gas: BigUInt) {
        let h = try StageHarness()
        let id = try h.submit(PipelineHarness.sdArgs(images: 1, prompt: "probe"))
        try h.runOnce(id)
        let tx = try #require(try h.transactions(id).first)
        return (committed(tx), BigUInt(tx.gasLimit) * tx.gasPrice)
    }

    @Test func createTasksPastABudgetWaitUnsignedAndARefundOrTheWindowGivesRoomBack() throws {
        let (c, gas) = try Self.probe()
        let h = try StageHarness()
        // Room for the first two and the gas of one more.
        try JobStore.setBudgets(h.db, [Budget(wallet: h.wallet.address, window: 3600, limit: 2 * c + gas)])
        let ids = try (0..<4).map { try h.submit(PipelineHarness.sdArgs(images: 1, prompt: "budget \($0)")) }
        for id in ids { _ = try h.runOnce(id) }
        let first = try #require(try h.transactions(ids[0]).first)
        var signed = try ids.filter { !(try h.transactions($0)).isEmpty }
        #expect(signed == Array(ids[0...1]))
        let waiting = try h.job(ids[2])
        #expect(waiting.status == .pending && waiting.stage == .create && waiting.txNonce == nil)
        #expect(waiting.lastError?.hasPrefix("waiting for budget: the budget of \(Self.text(2 * c + gas)) per hour of wallet \(h.wallet.address.checksummed) has \(Self.text(2 * c)) committed and this payment needs \(Self.text(c)); room returns at ") == true,
                "\(waiting.lastError ?? "")")
        #expect(try JobStore.budgetUse(h.db).map(\.used) == [2 * c])
        // The first task was cancelled on chain for its refund: only its gas stays spent.
        try h.db.execute("UPDATE crynux.job_transactions SET mined_block = 7, mined_status = true WHERE tx_hash = $1", [first.hash.hex])
        try h.db.execute("UPDATE crynux.jobs SET tx_hash = $2, abort_reason = 'Task Cancelled' WHERE id = $1", [ids[0], first.hash.hex])
        #expect(try JobStore.budgetUse(h.db).map(\.used) == [c + gas])
        _ = try h.runOnce(ids[2])
        _ = try h.runOnce(ids[3])
        signed = try ids.filter { !(try h.transactions($0)).isEmpty }
        #expect(signed == Array(ids[0...2]))
        // An hour later the window holds none of them.
        try h.db.execute("UPDATE crynux.job_transactions SET signed_at = signed_at - interval '1 hour'")
        _ = try h.runOnce(ids[3])
        #expect(try !h.transactions(ids[3]).isEmpty)
    }

    @Test func aTotalBudgetHoldsAcrossWalletsAndAPaymentAloneOverABudgetFails() throws {
        let (c, _) = try Self.probe()
        let h = try StageHarness(wallets: 2)
        try JobStore.setBudgets(h.db, [Budget(wallet: nil, window: 60, limit: c + c / 2)])
        // Job ids spread over the two wallets: ids of both parities.
        let ids = try (0..<4).map { try h.submit(PipelineHarness.sdArgs(images: 1, prompt: "total \($0)")) }
        for id in ids { _ = try h.runOnce(id) }
        let signed = try ids.filter { !(try h.transactions($0)).isEmpty }
        #expect(signed.count == 1)
        let payers = try Set(ids.map { h.pipeline.wallet(for: try h.job($0)).address })
        #expect(payers.count == 2)
        let unsigned = try #require(ids.first { !signed.contains($0) })
        #expect(try h.job(unsigned).lastError?.contains("of all wallets has \(Self.text(c)) committed") == true)
        // A task whose payment alone is over the budget can never be paid: it fails, unpaid.
        let big = try h.submit(PipelineHarness.sdArgs(images: 1, prompt: "big"), feeWei: String(3 * c))
        let job = try h.runOnce(big)
        #expect(job.status == .failed && job.lastError?.contains("it alone is over the limit; nothing was paid") == true, "\(job.lastError ?? "")")
        #expect(try h.transactions(big).isEmpty)
    }

    @Test func aRelayTaskPastABudgetIsNeitherStoredNorSentAndARefundGivesRoomBack() throws {
        let h = try LithiumHarness()
        let fee = 2 * Self.cnx
        try JobStore.setBudgets(h.db, [Budget(wallet: h.wallet.address, window: 86_400, limit: 2 * fee)])
        let ids = try (0..<3).map { try h.submit(PipelineHarness.sdArgs(images: 1, prompt: "relay budget \($0)"), feeWei: String(fee)) }
        for id in ids { for _ in 0..<2 { _ = try h.runOnce(id) } }
        #expect(try ids.map { try h.tasks($0).count } == [1, 1, 0])
        // A task stored but not yet answered by the Relay (no status yet) counts as much.
        try h.db.execute("UPDATE crynux.relay_tasks SET relay_status = NULL, abort_reason = NULL WHERE job_id = $1", [ids[1]])
        #expect(try JobStore.budgetUse(h.db).map(\.used) == [2 * fee])
        #expect(h.relay.taskCount == 2)
        let waiting = try h.job(ids[2])
        #expect(waiting.stage == .create && waiting.lastError?.hasPrefix("waiting for budget: the budget of 4 CNX per day of wallet") == true,
                "\(waiting.lastError ?? "")")
        // The Relay refunded the first (aborted before it started): room for the third.
        let refunded = try #require(try h.tasks(ids[0]).first)
        try h.db.execute("UPDATE crynux.relay_tasks SET relay_status = 9, abort_reason = 1, ended_at = now() WHERE commitment = $1", [refunded.commitment.hex])
        try h.db.execute("UPDATE crynux.jobs SET status = 'failed', finished_at = now(), last_error = 'aborted, refunded' WHERE id = $1", [ids[0]])
        _ = try h.runOnce(ids[2])
        #expect(try h.tasks(ids[2]).count == 1)
    }

    @Test func aJobThatAsksMoreThanTheCeilingFailsUnpaid() throws {
        let h = try StageHarness { $0.maxFeePerJobWei = 5 * Self.cnx }
        let id = try h.submit(PipelineHarness.sdArgs(images: 1), feeWei: String(6 * Self.cnx))
        let job = try h.runOnce(id)
        #expect(job.status == .failed && job.lastError == "the task's fee of 6 CNX is above --max-fee-per-job (5 CNX); nothing was paid")
        #expect(try h.transactions(id).isEmpty && h.network.sent.isEmpty)
        // num_images × the configured fee counts the same way.
        let configured = try StageHarness { $0.maxFeePerJobWei = 5 * Self.cnx; $0.feePerResultWei = 2 * Self.cnx }
        let three = try configured.submit(PipelineHarness.sdArgs(images: 3))
        #expect(try configured.runOnce(three).lastError?.hasPrefix("the task's fee of 6 CNX is above --max-fee-per-job") == true)
        let lithium = try LithiumHarness { $0.maxFeePerJobWei = Self.cnx }
        let relayJob = try lithium.submit(PipelineHarness.sdArgs(images: 1), feeWei: String(2 * Self.cnx))
        #expect(try lithium.runOnce(relayJob).lastError == "the task's fee of 2 CNX is above --max-fee-per-job (1 CNX); nothing was paid")
        #expect(try lithium.relay.calls("create") == 0 && lithium.tasks(relayJob).isEmpty)
    }

    @Test func budgetsAreWrittenAsAmountPerWindow() throws {
        #expect(try BudgetSpec.parse("50cnx/hour") == BudgetSpec(total: false, window: 3600, limit: 50 * Self.cnx))
        #expect(try BudgetSpec.parse("total:500CNX/day") == BudgetSpec(total: true, window: 86_400, limit: 500 * Self.cnx))
        #expect(try BudgetSpec.parse("0.25cnx/10m") == BudgetSpec(total: false, window: 600, limit: Self.cnx / 4))
        #expect(try BudgetSpec.parse("1000wei/30s") == BudgetSpec(total: false, window: 30, limit: 1000))
        for bad in ["50/hour", "50cnx", "cnx/hour", "0cnx/hour", "-1cnx/hour", "1.0000000000000000001cnx/h", "5cnx/0m", "5cnx/400d", "5cnx/fortnight", "1e3cnx/h"] {
            #expect(throws: BudgetSpec.Invalid.self, "\(bad)") { try BudgetSpec.parse(bad) }
        }
        #expect(Budget(wallet: nil, window: 600, limit: Self.cnx).label == "total/10m")
    }
}
