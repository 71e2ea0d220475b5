import BigInt
import Crynux
import Ethereum
import Foundation
import JobQueue
import Postgres
import TestSupport
import Testing
@testable import Worker

/// Every kind of transaction a wallet signs is followed at its nonce by one `NonceFollower`: under
/// a gas price that rises after the signature, each is replaced at a price the node takes, and the
/// nonce never stalls. The clock moves in steps of the re-send interval, as it does for a running
/// worker, so a timer that a re-send resets never fires.
@Suite("Nonce follower in-process")
struct NonceFollowerTests {
    /// Ten-second steps: the stage (or the keeper) runs once per step, after the re-send delay.
    static func steps(_ count: Int, _ h: StageHarness, _ id: Int64, _ run: () throws -> Void) throws {
        for _ in 0..<count {
            try h.age(id, seconds: 10)
            try run()
        }
    }

    static func raisePrice(_ h: StageHarness, times factor: BigUInt) {
        h.network.script { $0.gasPrice *= factor }
    }

    static func config(_ c: inout WorkerConfig) {
        c.rebroadcastAfter = 10
        c.replaceAfter = 60
        c.createDeadline = 1e6
    }

    /// A job polling a task past its deadline: the run signs and sends a cancelTask for the refund.
    static func overdueTaskCancelled() throws -> (StageHarness, Int64) {
        let h = try StageHarness(configure: config)
        let id = try h.jobAt(.poll)
        try h.db.execute("UPDATE crynux.jobs SET task_deadline = now() - interval '1 hour' WHERE id = $1", [id])
        h.network.script { $0.tasks[42] = TaskState(phase: .running, deadline: 1) }
        try h.runOnce(id)
        return (h, id)
    }

    @Test func aCreateTaskAndItsReplacementAreBumpedWhileThePriceRises() throws {
        let h = try StageHarness(configure: Self.config)
        let id = try h.submit()
        try h.runOnce(id)
        let first = try #require(try h.transactions(id).first)
        Self.raisePrice(h, times: 2)
        try Self.steps(7, h, id) { try h.runOnce(id) }
        var creates = try h.transactions(id).filter { $0.purpose == .createTask }
        #expect(creates.map(\.gasPrice) == [first.gasPrice, first.gasPrice * 2] && Set(creates.map(\.nonce)) == [first.nonce])
        // The price rises again after the replacement was signed: the replacement is replaced too.
        Self.raisePrice(h, times: 3)
        try Self.steps(7, h, id) { try h.runOnce(id) }
        creates = try h.transactions(id).filter { $0.purpose == .createTask }
        // The ceiling (3 × the first price) holds.
        #expect(creates.map(\.gasPrice) == [1, 2, 3].map { first.gasPrice * $0 })
        #expect(h.network.sent.last == creates.last?.raw)
    }

    @Test func aCancelTaskIsBumpedWhileThePriceRisesInsteadOfResentForever() throws {
        let (h, id) = try Self.overdueTaskCancelled()
        let cancel = try #require(try h.transactions(id).first)
        #expect(cancel.purpose == .cancelTask && h.network.sent.last == cancel.raw)
        Self.raisePrice(h, times: 2)
        try Self.steps(8, h, id) { try h.runOnce(id) }
        let cancels = try h.transactions(id).filter { $0.purpose == .cancelTask }
        #expect(cancels.count >= 2, "a cancelTask below the rising price was only sent again")
        #expect(cancels.last.map { $0.gasPrice >= cancel.gasPrice * 2 && $0.nonce == cancel.nonce } == true)
        #expect(h.network.sent.last == cancels.last?.raw)
    }

    @Test func aFillIsBumpedWhileThePriceRises() throws {
        let h = try StageHarness { Self.config(&$0); $0.createDeadline = 30 }
        let id = try h.submit()
        try h.runOnce(id)
        Self.raisePrice(h, times: 2)
        try Self.steps(4, h, id) { try h.runOnce(id) }
        let fill = try #require(try h.transactions(id).last)
        #expect(fill.purpose == .fillNonce)
        Self.raisePrice(h, times: 2)
        try Self.steps(7, h, id) { try h.runOnce(id) }
        let fills = try h.transactions(id).filter { $0.purpose == .fillNonce }
        #expect(fills.count == 2 && fills.last.map { $0.gasPrice >= fill.gasPrice * 2 && $0.nonce == fill.nonce } == true,
                "a fill below the rising price was only sent again")
        // Mined at last: the job fails without a task.
        h.network.mine(try #require(fills.last).hash)
        let job = try h.runOnce(id)
        #expect(job.status == .failed && job.taskId == nil)
    }

    @Test func anApprovalLeftBelowTheRisingPriceHasItsNonceFilledAndTheFillBumped() throws {
        let h = try HydrogenStageTests.harness(configure: Self.config)
        let keeper = WalletKeeper(network: h.network, config: h.config, log: WorkerLog(name: "k", quiet: true))
        let id = try h.submit()
        try h.runOnce(id)
        let approve = try #require(try h.transactions(id).first)
        #expect(approve.purpose == .approve)
        Self.raisePrice(h, times: 2)
        try Self.steps(7, h, id) { try keeper.pass(h.db, h.wallet) }
        let fill = try #require(try h.transactions(id).last)
        #expect(fill.purpose == .fillNonce && fill.nonce == approve.nonce && fill.gasPrice >= approve.gasPrice * 2)
        Self.raisePrice(h, times: 2)
        try Self.steps(7, h, id) { try keeper.pass(h.db, h.wallet) }
        let fills = try h.transactions(id).filter { $0.purpose == .fillNonce }
        #expect(fills.count == 2 && fills.last.map { $0.gasPrice >= fill.gasPrice * 2 } == true, "the keeper's fill below the rising price was only sent again")
        #expect(h.network.sent.last == fills.last?.raw)
    }

    @Test func theCreateDeadlineCountsFromTheFirstSignatureNotFromEnteringCreate() throws {
        let h = try StageHarness { Self.config(&$0); $0.createDeadline = 60 }
        let id = try h.submit()
        // The job waited in create (for room, funds or nodes) longer than the deadline.
        try h.ageStage(id, seconds: 600)
        try h.runOnce(id)
        #expect(try h.transactions(id).map(\.purpose) == [.createTask])
        try h.age(id, seconds: 1)
        try h.runOnce(id)
        #expect(try h.transactions(id).map(\.purpose) == [.createTask], "a fresh createTask was filled a second after its signature")
        // Its own deadline still holds.
        try h.age(id, seconds: 60)
        try h.runOnce(id)
        #expect(try h.transactions(id).last?.purpose == .fillNonce)
    }

    @Test func aFillTheWalletCannotPayForIsNotSignedAgainOnEveryRun() throws {
        let h = try StageHarness { Self.config(&$0); $0.createDeadline = 30 }
        let id = try h.submit()
        try h.runOnce(id)
        try h.age(id, seconds: 31)
        h.network.script { $0.sendVerdicts = [.refusedForGood("insufficient funds for gas * price + value")] }
        try h.runOnce(id)
        #expect(try h.transactions(id).map(\.purpose) == [.createTask, .fillNonce])
        // Runs a second apart for half a minute: no new fill.
        for _ in 0..<30 {
            try h.age(id, seconds: 1)
            try h.runOnce(id)
        }
        #expect(try h.transactions(id).map(\.purpose) == [.createTask, .fillNonce])
        // After the replacement delay the fill is bumped once (the wallet may have been funded).
        try h.age(id, seconds: 31)
        try h.runOnce(id)
        #expect(try h.transactions(id).map(\.purpose) == [.createTask, .fillNonce, .fillNonce])
    }

    @Test func aCancelTaskMinedRevertedIsTriedAgainAFewTimesThenPollingGoesOn() throws {
        let (h, id) = try Self.overdueTaskCancelled()
        for round in 1...PollStage.maxRevertedCancels {
            let cancels = try h.transactions(id).filter { $0.purpose == .cancelTask }
            #expect(cancels.count == round && Set(cancels.map(\.nonce)).count == round, "round \(round)")
            h.network.mine(try #require(cancels.last).hash, succeeded: false)
            try h.runOnce(id)
        }
        let cancels = try h.transactions(id).filter { $0.purpose == .cancelTask }
        #expect(cancels.count == PollStage.maxRevertedCancels)
        let job = try h.job(id)
        #expect(job.status == .pending && job.lastError?.contains("mined reverted") == true)
        // The task ends on its own: the job follows it.
        h.network.script { $0.tasks[42] = TaskState(phase: .succeeded(resultNode: Address(bytes: [UInt8](repeating: 7, count: 20)))) }
        #expect(try h.runOnce(id).stage == .fetch)
    }

    /// An Ethermint node refuses a nonce ahead of the account's ("invalid nonce; got 1, expected
    /// 0") instead of queueing it: the wallet's stored transaction of the nonce between goes first,
    /// sent by whichever worker met the gap, then ours again.
    @Test func aNonceGapOnEthermintSendsTheStoredTransactionsBetweenFirst() throws {
        let h = try StageHarness(configure: Self.config)
        let first = try h.submit(PipelineHarness.sdArgs(images: 1, prompt: "first"))
        try h.runOnce(first)
        let earlier = try #require(try h.transactions(first).first)
        let second = try h.submit(PipelineHarness.sdArgs(images: 1, prompt: "second"))
        try h.db.execute("UPDATE crynux.jobs SET run_at = now() + interval '1 hour' WHERE id = $1", [first])
        h.network.script { $0.sendVerdicts = [.nonceGap(expected: 0, message: "invalid nonce; got 1, expected 0: invalid sequence")] }
        let job = try h.runOnce(second)
        let ours = try #require(try h.transactions(second).first)
        #expect(ours.nonce == 1 && earlier.nonce == 0)
        #expect(Array(h.network.sent.suffix(3)) == [ours.raw, earlier.raw, ours.raw])
        #expect(job.stageAttempts == 0 && job.status == .pending)
    }
}
