import Crynux
import Ethereum
import Foundation
import JobQueue
import Postgres

/// poll: ask the contract how each task is doing, many tasks in one batch; no block tracking.
/// A task `getTask` no longer shows is told apart by its outcome logs and the queue. A task past
/// its deadline is cancelled for the refund.
struct PollStage {
    /// One outcome per job, in order. A job's own network failure is its outcome (retry later);
    /// the batch request failing throws.
    func decide(_ batch: [(job: Job, context: StageContext)]) throws -> [StageOutcome] {
        var outcomes = [StageOutcome?](repeating: nil, count: batch.count)
        var live: [Int] = []
        for (index, (job, context)) in batch.enumerated() {
            if job.taskId == nil {
                outcomes[index] = .fail(reason: "job is in poll without a task id", retryFrom: .poll)
            } else if let cancel = context.justSigned, cancel.purpose == .cancelTask {
                // The cancelTask we just stored: send it, and see the refund on a later poll.
                outcomes[index] = try Self.guarded(job, context) {
                    _ = try context.broadcast(cancel)
                    return .wait(after: 2)
                }
            } else {
                live.append(index)
            }
        }
        if !live.isEmpty {
            let network = batch[live[0]].context.network
            let states = try network.readTasks(live.map { batch[$0].job.taskId! })
            for (index, state) in zip(live, states) {
                let (job, context) = batch[index]
                outcomes[index] = try Self.guarded(job, context) { try decide(job, try state.get(), context) }
            }
        }
        return zip(batch, outcomes).map { item, outcome in
            outcome ?? item.context.retryLater(item.job, after: WorkerError("no answer for task \(item.job.taskId ?? 0) in the batch"))
        }
    }

    /// A failure of this job's own requests makes it due again later; a database failure is not
    /// the job's and goes up.
    private static func guarded(_ job: Job, _ context: StageContext, _ body: () throws -> StageOutcome) throws -> StageOutcome {
        try jobsOwnFailure(body, else: { context.retryLater(job, after: $0) })
    }

    private func decide(_ job: Job, _ state: TaskState, _ context: StageContext) throws -> StageOutcome {
        let taskId = job.taskId!
        let config = context.config
        let nextPoll = config.nextPoll(waited: context.seconds(since: job.stageEnteredAt))
        if job.cancelRequested, job.refundReason == nil {
            // A queued task can be cancelled at once for its whole fee. A running one runs on:
            // if it succeeds its nodes are paid; past its deadline it is cancelled on chain for
            // the refund, as the running path below does for any task (nodes' watchdogs may be
            // gone: nothing else would claim it).
            if state.phase == .absent, try finishedFromLogs(job, taskId, context) == nil, try context.network.isQueued(taskId: taskId) {
                return try cancelForRefund(job, taskId, "cancelled by operator", context)
            }
            if case .running = state.phase {
                return .wait(after: nextPoll, facts: JobFacts(refundReason: "cancelled by operator"),
                             note: "cancel requested while task \(taskId) runs: it runs on; past its deadline it is cancelled on chain for the refund")
            }
            return .cancel(note: "cancelled while the task ran")
        }
        let network = context.network
        // Era D: a succeeded task is deleted when its result node has put the results on the
        // Relay, so getTask (batched with every other poll) says when to fetch; asking the Relay
        // before then only earns "Task results not uploaded". Past `resultsUploadWait` the
        // Relay is asked anyway.
        if network.deletesTaskWhenResultsUploaded, job.resultNode != nil {
            let uploaded = state.phase == .absent
            if uploaded || context.seconds(since: job.taskFinishedAt) > config.resultsUploadWait {
                return .advance(to: .fetch, note: uploaded ? "task \(taskId): results uploaded (deleted on chain)"
                                    : "task \(taskId): results not reported uploaded within \(Int(config.resultsUploadWait)) s; asking the Relay")
            }
            // The upload takes the result node a few seconds: look again at a pace that grows
            // with the wait (half of it), so that a slow one costs few polls.
            if case .succeeded = state.phase {
                return .wait(after: min(max(config.pollInterval, context.seconds(since: job.taskFinishedAt) / 2), config.pollIntervalMax))
            }
        }
        switch state.phase {
        case .succeeded(let node) where network.deletesTaskWhenResultsUploaded:
            return .wait(after: config.pollInterval, facts: JobFacts(resultNode: node, stamps: [.taskFinished]),
                         note: "task \(taskId) succeeded on chain (result node \(node.checksummed)); waiting for its results on the Relay")
        case .succeeded(let node):
            return .advance(to: .fetch, facts: JobFacts(resultNode: node, stamps: [.taskFinished]),
                            note: "task \(taskId) succeeded on chain (result node \(node.checksummed))")
        case .aborted:
            return try finishedFromLogs(job, taskId, context) ?? .wait(after: nextPoll)
        case .running:
            var facts = JobFacts()
            if state.deadline > 0 {
                let deadline = Date(timeIntervalSince1970: Double(state.deadline))
                if job.taskDeadline == nil { facts.taskDeadline = deadline }
                if context.now > deadline.addingTimeInterval(config.cancelGrace) {
                    return try cancelForRefund(job, taskId, job.refundReason ?? "the task is past its deadline", context)
                }
            }
            return .wait(after: nextPoll, facts: facts)
        case .absent:
            // Queued, or finished and deleted. The outcome logs tell the latter apart.
            if let finished = try finishedFromLogs(job, taskId, context) { return finished }
            if try context.network.isQueued(taskId: taskId) {
                if let reason = job.refundReason {
                    return try cancelForRefund(job, taskId, reason, context)
                }
                if let queuedAt = job.taskQueuedAt, context.seconds(since: queuedAt) > config.queueTimeout {
                    return try cancelForRefund(job, taskId, "queued on chain for longer than \(Int(config.queueTimeout)) s", context)
                }
                // One history line when the task is first seen queued, not one per poll.
                guard job.taskQueuedAt == nil else { return .wait(after: nextPoll) }
                return .wait(after: nextPoll, facts: JobFacts(stamps: [.taskQueued]),
                             note: "task \(taskId) is queued on chain, waiting for free nodes")
            }
            if job.stageAttempts >= 10 {
                return .fail(reason: "task \(taskId) is neither running, queued nor finished on chain", retryFrom: .poll)
            }
            // Between queue and start, or a lagging node: look again soon.
            return .wait(after: config.backoff(attempt: job.stageAttempts), failedTry: true)
        }
    }

    /// TaskSuccess or TaskAborted from the task's logs (a targeted eth_getLogs, no block tracking).
    private func finishedFromLogs(_ job: Job, _ taskId: UInt64, _ context: StageContext) throws -> StageOutcome? {
        switch try context.network.finishedOutcome(taskId: taskId, fromBlock: job.txBlockNumber ?? 0) {
        case .succeeded(let node)?:
            return .advance(to: .fetch, facts: JobFacts(resultNode: node, stamps: [.taskFinished]),
                            note: "task \(taskId) succeeded on chain (result node \(node.checksummed))")
        case .aborted(let reason)?:
            let facts = JobFacts(abortReason: reason, stamps: [.taskFinished])
            if let refund = job.refundReason, reason == TaskContract.cancelledReason {
                if job.cancelRequested {
                    return .cancel(note: "task \(taskId) was cancelled on chain; its fee went back to the wallet", facts: facts)
                }
                return .fail(reason: "\(refund); task \(taskId) was cancelled on chain and its fee refunded", retryFrom: .create, facts: facts)
            }
            if reason == TaskContract.evictedReason, job.refundReason == nil, job.recreations < context.config.maxRecreations {
                return .recreate(note: "task \(taskId) was evicted from the full queue by better-paying tasks (its fee of \(job.feeWei.map { "\($0) wei" } ?? "?") is not refunded); creating it again (\(job.recreations + 1) of at most \(context.config.maxRecreations))")
            }
            return .fail(reason: "task \(taskId) was aborted on chain: \(reason)", retryFrom: .create, facts: facts)
        case nil:
            return nil
        }
    }

    /// Cancels the task on chain for its refund: a queued task at once, a running one after its
    /// deadline. The poll that follows sees TaskAborted("Task Cancelled") and ends the job. A
    /// cancelTask already sent is followed to its end like every transaction (`NonceFollower`);
    /// one mined reverted (a race with the task starting or ending) is tried again while a fresh
    /// estimate says it would pass, at most `maxRevertedCancels` times, each paying gas.
    static let maxRevertedCancels = 3

    private func cancelForRefund(_ job: Job, _ taskId: UInt64, _ reason: String, _ context: StageContext) throws -> StageOutcome {
        let config = context.config
        let facts = JobFacts(refundReason: job.refundReason ?? reason)
        let sent = try context.transactions(.cancelTask)
        let call = context.network.cancelTaskCall(taskId: taskId)
        if let newest = sent.last {
            let current = sent.filter { $0.nonce == newest.nonce }
            let ceiling = config.gasPriceCeiling(firstPrice: current[0].gasPrice, gasLimit: newest.gasLimit, fee: job.tokenFeeWei ?? job.feeWei ?? 0)
            switch try NonceFollower(context: context).next(current, replacement: .sameCall(call, ceiling: ceiling)) {
            case .mined(_, let receipt) where receipt.status:
                return .wait(after: 2, facts: facts)  // the abort shows on a later poll
            case .mined:
                let reverted = Set(sent.filter { $0.minedStatus == false }.map(\.nonce)).union([newest.nonce]).count
                guard reverted < Self.maxRevertedCancels else {
                    return .wait(after: config.pollIntervalMax, facts: facts,
                                 error: "\(reverted) cancelTasks of task \(taskId) were mined reverted; polling until the task ends")
                }
                // Falls through to a new cancelTask at the next nonce, if the estimate passes.
            case .send(let tx):
                _ = try context.broadcast(tx)
                return .wait(after: 2, facts: facts)
            case .wait:
                return .wait(after: 2, facts: facts)
            case .sign(let draft, let why):
                return .sign(draft, facts: facts, note: why)
            }
        }
        let gasLimit: UInt64
        switch try context.network.estimateGas(call, from: context.wallet.address) {
        case .gas(let estimate):
            // Freeing the nodes may start a queued task inside the same transaction, one that was
            // queued after this estimate: room for a whole start.
            let (withStart, overflow) = estimate.addingReportingOverflow(config.taskStartGas)
            gasLimit = max(StageContext.gasLimit(doubling: estimate, floor: 300_000), overflow ? .max : withStart)
        case .reverts(let why):
            // e.g. "Task has not exceeded the deadline yet" (clock skew) or already gone: poll on.
            return .wait(after: config.pollIntervalMax, facts: facts, note: "cancelTask would revert (\(why)); polling on")
        }
        let price = try context.gasPrice()
        let draft = context.draft(.cancelTask, call, gasLimit: gasLimit, gasPrice: price, tip: try context.tip(under: price))
        return .sign(draft, facts: facts, note: "task \(taskId): cancelTask for the refund (\(reason))")
    }
}
