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
            if job.cancelRequested {
                outcomes[index] = .cancel(note: "cancelled while the task ran")
            } else if job.taskId == nil {
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
        return outcomes.map { $0! }
    }

    /// A failure of this job's own requests makes it due again later; a database failure is not
    /// the job's and goes up.
    private static func guarded(_ job: Job, _ context: StageContext, _ body: () throws -> StageOutcome) throws -> StageOutcome {
        do {
            return try body()
        } catch let error as PostgresError {
            throw error
        } catch {
            return context.retryLater(job, after: error)
        }
    }

    private func decide(_ job: Job, _ state: TaskState, _ context: StageContext) throws -> StageOutcome {
        let taskId = job.taskId!
        let nextPoll = context.config.nextPoll(waited: context.seconds(since: job.stageEnteredAt))
        switch state.phase {
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
                if context.now > deadline.addingTimeInterval(context.config.cancelGrace) {
                    return try cancelOverdue(job, taskId, context)
                }
            }
            return .wait(after: nextPoll, facts: facts)
        case .absent:
            // Queued, or finished and deleted. The outcome logs tell the latter apart.
            if let finished = try finishedFromLogs(job, taskId, context) { return finished }
            if try context.network.isQueued(taskId: taskId) {
                // One history line when the task is first seen queued, not one per poll.
                guard job.taskQueuedAt == nil else { return .wait(after: nextPoll) }
                return .wait(after: nextPoll, facts: JobFacts(stamps: [.taskQueued]),
                             note: "task \(taskId) is queued on chain, waiting for free nodes")
            }
            if job.stageAttempts >= 10 {
                return .fail(reason: "task \(taskId) is neither running, queued nor finished on chain", retryFrom: .poll)
            }
            // Between queue and start, or a lagging node: look again soon.
            return .wait(after: context.config.backoff(attempt: job.stageAttempts), failedTry: true)
        }
    }

    /// TaskSuccess or TaskAborted from the task's logs (a targeted eth_getLogs, no block tracking).
    private func finishedFromLogs(_ job: Job, _ taskId: UInt64, _ context: StageContext) throws -> StageOutcome? {
        switch try context.network.finishedOutcome(taskId: taskId, fromBlock: job.txBlockNumber ?? 0) {
        case .succeeded(let node)?:
            return .advance(to: .fetch, facts: JobFacts(resultNode: node, stamps: [.taskFinished]),
                            note: "task \(taskId) succeeded on chain (result node \(node.checksummed))")
        case .aborted(let reason)?:
            return .fail(reason: "task \(taskId) was aborted on chain: \(reason)", retryFrom: .create,
                         facts: JobFacts(abortReason: reason, stamps: [.taskFinished]))
        case nil:
            return nil
        }
    }

    /// The task is past its on-chain deadline: cancel it for the refund. The poll that follows
    /// sees the TaskAborted("Task Cancelled") and fails the job with it.
    private func cancelOverdue(_ job: Job, _ taskId: UInt64, _ context: StageContext) throws -> StageOutcome {
        let sent = try context.transactions(.cancelTask)
        if let latest = sent.last {
            if try context.minedReceipt(of: sent) == nil, context.seconds(since: latest.lastSentAt) >= context.config.rebroadcastAfter {
                _ = try context.broadcast(latest)
            }
            return .wait(after: 2)
        }
        let call = context.network.cancelTaskCall(taskId: taskId)
        let gasLimit: UInt64
        switch try context.network.estimateGas(call, from: context.wallet.address) {
        case .gas(let estimate):
            let (padded, overflow) = estimate.addingReportingOverflow(estimate / 4 + 10_000)
            gasLimit = overflow ? .max : padded
        case .reverts(let reason):
            // e.g. "Task has not exceeded the deadline yet" (clock skew) or already gone: poll on.
            return .wait(after: context.config.pollIntervalMax, note: "cancelTask would revert (\(reason)); polling on")
        }
        let draft = try context.draft(.cancelTask, call, gasLimit: gasLimit, gasPrice: try context.gasPrice())
        return .sign(draft, note: "task \(taskId) is past its deadline: cancelTask for the refund")
    }
}
