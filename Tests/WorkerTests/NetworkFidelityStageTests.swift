import BigInt
import Crynux
import Ethereum
import Foundation
import JobQueue
import Testing
@testable import Worker

/// What the real era-D network does that a kinder one would not, in-process: the Relay's schema,
/// the queue's pricing, a cancel that starts a queued task.
@Suite("Network fidelity in-process")
struct NetworkFidelityStageTests {
    static let objectBaseModel = #"{"base_model":{"name":"crynux-ai/stable-diffusion-v1-5"},"prompt":"p","task_config":{"num_images":1}}"#

    @Test func argumentsTheNetworksRelayWouldRefuseSpendNothing() throws {
        let h = try StageHarness()
        #expect(h.network.sdSchema == .v68b52d2)
        let id = try h.submit(Self.objectBaseModel)
        let job = try h.runOnce(id)
        #expect(job.status == .failed && job.lastError?.hasPrefix("invalid task arguments: base_model: ") == true)
        #expect(job.lastError?.contains("stable-diffusion-task@68b52d2") == true)
        #expect(try h.transactions(id).isEmpty && h.network.sent.isEmpty && h.walletNonce() == 0)
    }

    @Test func aNetworkWithTheNewerSchemaTakesTheObjectForm() throws {
        let h = try StageHarness()
        h.network.sdSchema = .v8fcf6e7
        let id = try h.submit(Self.objectBaseModel)
        let job = try h.runOnce(id)
        #expect(job.txNonce == 0 && h.network.sent.count == 1)
    }

    @Test func aPriceBelowTheCheapestQueuedTaskIsWarnedAbout() throws {
        let h = try StageHarness()
        // 2 results for 10 wei: 5 wei each, against 6 wei for the cheapest queued task.
        h.network.script { $0.queue = QueueState(size: 3, limit: 50, cheapestPrice: 6) }
        let low = try h.submit(feeWei: "10")
        try h.runOnce(low)
        #expect(try h.job(low).txNonce == 0)
        let warning = try h.details(low).first { $0.hasPrefix("signed createTask") }
        #expect(warning?.contains("warning: its price of 5 wei per result is below the cheapest queued task's (6)") == true)

        h.network.script { $0.queue = QueueState(size: 3, limit: 50, cheapestPrice: 5) }
        let equal = try h.submit(PipelineHarness.sdArgs(images: 2, prompt: "equal"), feeWei: "10")
        try h.runOnce(equal)
        #expect(try h.job(equal).txNonce == 1)
        #expect(try h.details(equal).contains { $0.contains("warning") } == false)
    }

    @Test func theDefaultFeeIsWhatTheNetworksBridgePaid() throws {
        let h = try StageHarness()
        let id = try h.submit(PipelineHarness.sdArgs(images: 3))
        try h.runOnce(id)
        // 4.1 CNX per image (crynux-bridge `task_fee: 4100000000` GWei).
        #expect(try h.job(id).feeWei == BigUInt(3) * BigUInt(4_100_000_000) * BigUInt(1_000_000_000))
    }

    @Test func aSlowNodeShrinksTheClaimSoLeasesDoNotRunOutInTheQueue() {
        // 10 s leases: at 2 s a job, a batch of 8 would outlive its leases; claim 1 (3.3 s of work).
        #expect(WorkerRuntime.claimLimit(batch: 8, lease: 10, secondsPerJob: 2) == 1)
        #expect(WorkerRuntime.claimLimit(batch: 8, lease: 120, secondsPerJob: 2) == 8)
        #expect(WorkerRuntime.claimLimit(batch: 8, lease: 120, secondsPerJob: 10) == 4)
        // Never below one, and a fast pace gives the whole batch back.
        #expect(WorkerRuntime.claimLimit(batch: 8, lease: 1, secondsPerJob: 60) == 1)
        #expect(WorkerRuntime.claimLimit(batch: 8, lease: 10, secondsPerJob: 0.001) == 8)
        #expect(WorkerRuntime.claimLimit(batch: 8, lease: 10, secondsPerJob: 0) == 8)
    }

    @Test func aCancelHasGasForAQueuedTaskStartingInsideIt() throws {
        let h = try StageHarness { $0.cancelGrace = 0 }
        let id = try h.jobAt(.poll)
        h.network.script {
            $0.tasks[42] = TaskState(phase: .running, deadline: UInt64(Date().timeIntervalSince1970) - 10)
            // Estimated while nothing was queued: the cancel alone.
            $0.estimate = .gas(60_000)
        }
        try h.runOnce(id)
        let cancel = try #require(try h.transactions(id).first { $0.purpose == .cancelTask })
        #expect(cancel.gasLimit >= 60_000 + h.config.taskStartGas)
    }
}
