import BigInt
import Crynux
import Foundation
import JobQueue

/// Lithium poll: the task's status from the Relay, paced by what the Relay says of it (queued,
/// started with the timeout it computed, validated and waiting for the node's upload), so that a
/// task costs few requests. ScoreReady / ErrorReported hand the job to validate; EndSuccess /
/// EndGroupSuccess to fetch; any other end fails the job with the Relay's reason and what became
/// of the fee. An operator's cancel, or a task queued longer than `--queue-timeout`, is sent as
/// the creator's cancel while the task is queued (the fee comes back).
struct LithiumPollStage {
    func decide(_ job: Job, _ context: LithiumContext) throws -> StageOutcome {
        guard let current = context.current else {
            return .fail(reason: "the job has no Relay task to follow", retryFrom: .create)
        }
        // After a group validation the results come from the member the Relay picked.
        let watched = current.validatedAt != nil && current.vrfSelected == true ? context.group : [current]
        var seen: [(record: RelayTaskRecord, task: LithiumTask)] = []
        var changes: [RelayTaskChange] = []
        for record in watched {
            switch try context.relay.task(record.commitment) {
            case .found(let task):
                seen.append((record, task))
                changes.append(record.change(from: task))
            case .notFound:
                // Ours and created: the Relay lost it. Never paid again by itself: a person decides.
                guard job.stageAttempts >= 5 else {
                    return .wait(after: context.config.backoff(attempt: job.stageAttempts), failedTry: true,
                                 error: "the Relay does not know Relay task \(record.commitment.hex) it created")
                }
                return .fail(reason: "the Relay no longer knows Relay task \(record.commitment.hex), which it created and charged; "
                                + "`crynux-worker retry` follows it again, nothing was paid twice", retryFrom: .poll)
            case .rejected(let words):
                throw WorkerError("the Relay refused to show Relay task \(record.commitment.hex): \(words)")
            }
        }
        var facts = JobFacts()
        facts.relayTaskChanges = changes
        if let winner = seen.first(where: { $0.task.status.hasResults }) {
            facts.relayCommitment = winner.record.commitment
            facts.stamps = [.taskFinished]
            return .advance(to: .fetch, facts: facts, note: "Relay task \(winner.record.commitment.hex) ended \(winner.task.status.name)")
        }
        let task = seen[0].task
        switch task.status {
        case .queued:
            return try queued(job, current, task, facts, context)
        case .started, .parametersUploaded:
            return .wait(after: pace(since: task.startTime ?? current.createdAt, context), facts: facts)
        case .scoreReady, .errorReported:
            if current.validatedAt == nil {
                return .advance(to: .validate, facts: facts, note: "Relay task \(current.commitment.hex) is \(task.status.name)")
            }
            return .wait(after: context.config.pollInterval, facts: facts)  // the Relay is taking in our validation
        case .validated, .groupValidated:
            return .wait(after: pace(since: current.validatedAt, context) / 2, facts: facts)
        case .endInvalidated, .endAborted, .endGroupRefund, .endSuccess, .endGroupSuccess:
            if let alive = seen.first(where: { !$0.task.status.isTerminal }) {
                return .wait(after: pace(since: alive.task.validatedTime ?? alive.task.startTime, context), facts: facts)
            }
            let endings = seen.map { "Relay task \($0.record.commitment.hex) ended \($0.task.ending)" }.joined(separator: "; ")
            facts.stamps = [.taskFinished]
            facts.abortReason = task.outcomeName  // job_history's outcome: "aborted: Timeout", …
            return .fail(reason: endings, retryFrom: .create, facts: facts)
        }
    }

    private func queued(_ job: Job, _ current: RelayTaskRecord, _ task: LithiumTask, _ facts: JobFacts,
                        _ context: LithiumContext) throws -> StageOutcome {
        let waited = context.seconds(since: task.createTime ?? current.createdAt)
        let why: String? = job.cancelRequested ? "cancel requested"
            : waited > context.config.queueTimeout ? "queued for \(Int(waited)) s, longer than --queue-timeout \(Int(context.config.queueTimeout)) s" : nil
        guard let why else {
            return .wait(after: pace(since: task.createTime ?? current.createdAt, context), facts: facts)
        }
        var facts = facts
        var sent = RelayTaskChange(commitment: current.commitment)
        sent.cancelSent = true
        switch try context.relay.cancel(current.commitment) {
        case .cancelled:
            sent.relayStatus = LithiumStatus.endAborted.rawValue
            sent.abortReason = LithiumAbortReason.creatorCancelled.rawValue
            sent.ended = true
            sent.refunded = current.taskFee
            facts.relayTaskChanges.append(sent)
            facts.stamps = [.taskFinished]
            facts.abortReason = LithiumAbortReason.creatorCancelled.name
            let note = "\(why): Relay task \(current.commitment.hex) cancelled while queued, fee refunded"
            return job.cancelRequested ? .cancel(note: note, facts: facts) : .fail(reason: note, retryFrom: .create, facts: facts)
        case .tooLate:
            // It left the queue a moment ago: it runs and is paid for; follow it.
            facts.relayTaskChanges.append(sent)
            return .wait(after: context.config.pollInterval, facts: facts,
                         note: "\(why), but Relay task \(current.commitment.hex) has just left the queue: it runs to its end")
        case .notFound:
            throw WorkerError("the Relay does not know Relay task \(current.commitment.hex) it just showed")
        case .rejected(let words):
            throw WorkerError("the Relay refused to cancel Relay task \(current.commitment.hex): \(words)")
        }
    }

    /// The next look: as long again as the task has been in its status (so a task costs about
    /// log2(its duration) looks), between --poll-interval and --poll-interval-max.
    private func pace(since start: Date?, _ context: LithiumContext) -> Double {
        let elapsed = context.seconds(since: start)
        return min(context.config.pollIntervalMax, max(context.config.pollInterval, elapsed.isFinite ? elapsed : 0))
    }
}
