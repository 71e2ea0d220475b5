import BigInt
import Crynux
import Ethereum
import Foundation
import JobQueue

/// Lithium create: validate the arguments against the schemas the live Relay enforces, store the
/// task (its derived task_id, nonce and commitment, the fee and every request field) with the job,
/// then send the signed create request. A lost answer or a crash sends the same request again;
/// "Task already uploaded" for our own commitment means created. Nothing is paid for arguments
/// the Relay would refuse, and a Relay Account short of the fee makes the job wait, unpaid.
struct LithiumCreateStage {
    func decide(_ job: Job, _ context: LithiumContext) throws -> StageOutcome {
        let current = context.current
        // The latest attempt's task is alive (or its fate unknown): this attempt goes on.
        if let current, current.status?.isTerminal != true {
            if job.cancelRequested, current.createdAt == nil {
                return try cancelUnsent(job, current, context)
            }
            return try send(job, current, context)
        }
        if job.cancelRequested {
            return .cancel(note: "cancelled before a Relay task was created")
        }
        return try prepare(job, attempt: current.map { $0.attempt + 1 } ?? 0, context)
    }

    // MARK: before anything is sent

    private func prepare(_ job: Job, attempt: Int, _ context: LithiumContext) throws -> StageOutcome {
        let kind: TaskKind, arguments: String
        switch try job.createInput() {
        case .ready(let k, let a): (kind, arguments) = (k, a)
        case .refused(let outcome): return outcome
        }
        let spec: LithiumTaskSpec
        do {
            spec = try TaskArguments.lithiumSpec(kind: kind, arguments: arguments)
        } catch {
            return .fail(reason: "invalid task arguments: \(error); nothing was sent", retryFrom: .create)
        }
        let fee = job.feeWeiOverride ?? (kind == .sd ? context.config.lithiumSDFeePerImageWei * BigUInt(spec.taskSize)
                                                     : context.config.lithiumGPTFeeWei)
        guard fee > 0 else {
            // The Relay would queue a task priced 0 behind every paid one, for ever.
            return .fail(reason: "the task's fee is 0: set fee_wei above 0 (or leave it unset for the configured fee); nothing was sent", retryFrom: .create)
        }
        if let refused = feeOverCeiling(fee, context.config) { return refused }
        let key = context.wallet.key
        let taskId = LithiumIdentity.taskId(key: key, job: job, attempt: attempt, arguments: arguments)
        let nonce = LithiumIdentity.nonce(key: key, job: job, attempt: attempt, member: 0, arguments: arguments)
        let commitment = LithiumTaskRequest.commitment(taskId: taskId, nonce: nonce)
        let record = RelayTaskRecord(commitment: commitment, jobId: job.id, attempt: attempt, member: 0, wallet: context.wallet.address,
                                     taskId: taskId, nonce: nonce, taskType: spec.taskType.rawValue, taskFee: fee,
                                     minVram: job.vramLimitOverride ?? spec.minVram, taskVersion: spec.taskVersion,
                                     taskSize: spec.taskSize, modelIds: spec.modelIds)
        var facts = JobFacts(cap: spec.taskSize, vramLimit: record.minVram, walletAddress: context.wallet.address, networkProfile: "lithium")
        facts.taskType = UInt64(spec.taskType.rawValue)
        facts.relayCommitment = commitment
        facts.relayTasksPrepared = [record]
        return .prepare(facts: facts, note: "Relay task \(commitment.hex) prepared (attempt \(attempt), fee \(cnx(fee)))")
    }

    // MARK: the request

    private func send(_ job: Job, _ task: RelayTaskRecord, _ context: LithiumContext) throws -> StageOutcome {
        guard let arguments = job.taskArgs else { throw WorkerError("job \(job.id) was claimed for create without its arguments") }
        if task.createdAt != nil {
            // Created before the job's rows were written back (a crash after the answer): go on.
            return .advance(to: .poll, facts: JobFacts(relayCommitment: task.commitment), note: "Relay task \(task.commitment.hex) already created")
        }
        switch try context.relay.create(task.request(arguments: arguments)) {
        case .created(let created):
            var facts = JobFacts(relayCommitment: task.commitment, stamps: [.argsUploaded])
            facts.relayTaskChanges = [task.change(from: created)]
            return .advance(to: .poll, after: context.config.pollInterval, facts: facts,
                            note: "Relay task \(task.commitment.hex) created (sequence \(created.sequence)), \(cnx(task.taskFee)) charged")
        case .alreadyUploaded:
            // Our commitment: the task is ours (nobody else can derive it), sent before and its answer lost.
            guard case .found(let found) = try context.relay.task(task.commitment) else {
                return .wait(after: context.config.backoff(attempt: job.stageAttempts), failedTry: true,
                             error: "the Relay says Relay task \(task.commitment.hex) exists but does not show it yet")
            }
            return adopt(task, found, context)
        case .insufficientBalance:
            let balance = (try? context.relay.balance()).map(cnx) ?? "less"
            let error = "\(CreateStage.waitingForFunds): the Relay Account of \(context.wallet.address.checksummed) holds \(balance), "
                + "not the task's fee of \(cnx(task.taskFee)) (fund it by sending CNX to the Relay's deposit address); nothing was charged"
            let first = !(job.lastError?.hasPrefix(CreateStage.waitingForFunds) ?? false)
            return .wait(after: context.config.fundsRetry, note: first ? error : nil, error: error)
        case .rejected(let words):
            return .fail(reason: "the Relay refused the task (\(words)); nothing was paid", retryFrom: .create)
        }
    }

    private func adopt(_ task: RelayTaskRecord, _ found: LithiumTask, _ context: LithiumContext) -> StageOutcome {
        guard found.creator == context.wallet.address else {
            return .fail(reason: "the Relay holds Relay task \(task.commitment.hex) under another creator (\(found.creator.checksummed)); nothing was paid by this job",
                         retryFrom: .create)
        }
        var facts = JobFacts(relayCommitment: task.commitment, stamps: [.argsUploaded])
        facts.relayTaskChanges = [task.change(from: found)]
        return .advance(to: .poll, facts: facts, note: "Relay task \(task.commitment.hex) was already created (an answer was lost): adopted")
    }

    /// A cancel before the Relay answered a create: ask whether it has the task. It has not: the
    /// job ends and nothing was paid (a request still in flight cannot land later: the Relay takes
    /// a signature only within 60 s of its timestamp, and a create gives up after 30 s). It has:
    /// adopt it, and the poll stage cancels it while it is queued, for the refund.
    private func cancelUnsent(_ job: Job, _ task: RelayTaskRecord, _ context: LithiumContext) throws -> StageOutcome {
        switch try context.relay.task(task.commitment) {
        case .notFound:
            return .cancel(note: "cancelled before the Relay took Relay task \(task.commitment.hex); nothing was paid")
        case .found(let found):
            return adopt(task, found, context)
        case .rejected(let words):
            throw WorkerError("the Relay refused to show Relay task \(task.commitment.hex): \(words)")
        }
    }
}
