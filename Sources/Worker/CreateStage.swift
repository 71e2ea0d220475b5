import BigInt
import Crynux
import Ethereum
import Foundation
import JobQueue

/// create: validate the arguments, sign createTask (stored before it is sent), broadcast it,
/// and read the task id from its receipt. Re-sends the same bytes, or replaces them at a higher
/// price with the same nonce, until one of the job's transactions is mined.
struct CreateStage {
    func decide(_ job: Job, _ context: StageContext) throws -> StageOutcome {
        job.txNonce == nil ? try sign(job, context) : try confirm(job, context)
    }

    // MARK: before anything is signed

    private func sign(_ job: Job, _ context: StageContext) throws -> StageOutcome {
        let config = context.config
        if job.cancelRequested {
            return .cancel(note: "cancelled before any transaction was signed")
        }
        guard let kind = TaskKind(rawValue: job.kind) else {
            return .fail(reason: "unknown job kind \(job.kind)", retryFrom: .create)
        }
        let task: ValidatedTask
        do {
            task = try TaskArguments.validate(kind: kind, arguments: job.taskArgs)
        } catch {
            return .fail(reason: "invalid task arguments: \(error)", retryFrom: .create)
        }
        let request = TaskRequest(taskType: job.taskTypeOverride ?? task.taskType, taskHash: task.taskHash,
                                  vramLimit: job.vramLimitOverride ?? task.vramLimit, cap: task.cap,
                                  fee: job.feeWeiOverride ?? config.feePerResultWei * BigUInt(task.cap))
        let call = try context.network.planCreateTask(request).createTask

        let gasLimit: UInt64
        if let fixed = config.gasLimit {
            gasLimit = fixed
        } else {
            switch try context.network.estimateGas(call, from: context.wallet.address) {
            case .gas(let estimate):
                // The estimate follows one path through createTask (start with free nodes, or
                // queue, maybe evicting); by the time it is mined another path may be taken, and
                // a start costs about twice a queueing. Unused gas is not charged.
                let doubled = estimate.multipliedReportingOverflow(by: 2)
                gasLimit = max(doubled.overflow ? .max : doubled.partialValue, config.minimumGasLimit)
            case .reverts(let reason):
                // The node simulated it and it reverts: refuse now, before any money moves.
                return .fail(reason: "createTask would revert (\(reason)); no transaction was sent", retryFrom: .create)
            }
        }
        let draft = try context.draft(.createTask, call, gasLimit: gasLimit, gasPrice: try context.gasPrice())
        let facts = JobFacts(taskType: request.taskType, taskHash: request.taskHash, cap: request.cap, vramLimit: request.vramLimit,
                             feeWei: request.fee, walletAddress: context.wallet.address, chainId: context.wallet.chainId,
                             stamps: [.txSigned])
        return .sign(draft, facts: facts, note: "signed createTask (fee \(request.fee) wei, gas \(gasLimit))")
    }

    // MARK: signed: send until mined

    private func confirm(_ job: Job, _ context: StageContext) throws -> StageOutcome {
        let config = context.config
        var txs = try context.transactions(.createTask)
        guard let latest = txs.last else {
            return .fail(reason: "job has a nonce but no stored createTask transaction", retryFrom: .create)
        }
        let toSend: StoredTransaction
        if let signed = context.justSigned, signed.purpose == .createTask {
            // Stored a moment ago: send it now.
            toSend = signed
            if !txs.contains(signed) { txs.append(signed) }
        } else {
            if let (tx, receipt) = try context.minedReceipt(of: txs) {
                return try mined(job, tx, receipt, context)
            }
            guard context.seconds(since: latest.lastSentAt) >= config.rebroadcastAfter else {
                return .wait(after: 1)
            }
            let sinceFirst = context.seconds(since: txs.first?.signedAt ?? context.now)
            if latest.lastSentAt != nil, sinceFirst >= config.replaceAfter * Double(txs.count) {
                // Not mined for long: same nonce, higher price. Both are kept; whichever lands counts.
                let price = max(BigUInt(Double(latest.gasPrice) * config.replacementPriceFactor), latest.gasPrice + 1,
                                try context.gasPrice())
                let draft = try context.draft(.createTask, try createTaskCall(of: job, context), gasLimit: latest.gasLimit,
                                              gasPrice: price, replacingNonce: latest.nonce)
                return .sign(draft, note: "createTask not mined after \(Int(sinceFirst)) s: replaced at gas price \(price)")
            }
            toSend = latest
        }
        switch try context.broadcast(toSend) {
        case .accepted:
            if let (tx, receipt) = try context.minedReceipt(of: txs) {
                return try mined(job, tx, receipt, context)
            }
            return .wait(after: 1)
        case .nonceTooLow:
            if let (tx, receipt) = try context.minedReceipt(of: txs) {
                return try mined(job, tx, receipt, context)
            }
            // The nonce was used by a transaction that is not this job's: ours can never land.
            try context.reconcileWallet()
            return .fail(reason: "nonce \(latest.nonce) was used by a transaction that is not this job's, so its createTask can never be mined; no task was created",
                         retryFrom: .create)
        case .rejected(let message):
            return .wait(after: config.backoff(attempt: job.stageAttempts), note: "node refused createTask: \(message)", failedTry: true,
                         error: "node refused createTask: \(message)")
        }
    }

    /// The job's createTask call, rebuilt from its stored facts (for a replacement or a replay).
    private func createTaskCall(of job: Job, _ context: StageContext) throws -> ContractCall {
        guard let type = job.taskType, let hash = job.taskHash, let vram = job.vramLimit, let cap = job.cap else {
            throw WorkerError("job \(job.id) lacks the createTask facts")
        }
        return try context.network.planCreateTask(TaskRequest(taskType: type, taskHash: hash, vramLimit: vram, cap: cap,
                                                              fee: job.feeWei ?? 0)).createTask
    }

    private func mined(_ job: Job, _ tx: StoredTransaction, _ receipt: TransactionReceipt, _ context: StageContext) throws -> StageOutcome {
        var facts = JobFacts(txHash: tx.hash, txBlockNumber: receipt.blockNumber, stamps: [.txMined])
        guard receipt.status else {
            return .fail(reason: "createTask reverted: \(revertReason(job, tx, receipt, context))", retryFrom: .create, facts: facts)
        }
        guard let taskId = context.network.createdTaskId(in: receipt) else {
            // Paid, but no task to follow: nothing can continue it, and paying again needs a person.
            return .fail(reason: "createTask was mined in block \(receipt.blockNumber) but has no TaskPending event of the Task contract",
                         retryFrom: .poll, facts: facts)
        }
        facts.taskId = taskId
        if job.cancelRequested {
            return .cancel(note: "task \(taskId) created in block \(receipt.blockNumber), then cancelled as requested (its arguments are never uploaded)",
                           facts: facts)
        }
        return .advance(to: .upload, facts: facts, note: "task \(taskId) created in block \(receipt.blockNumber) by tx \(tx.hash.hex)")
    }

    private func revertReason(_ job: Job, _ tx: StoredTransaction, _ receipt: TransactionReceipt, _ context: StageContext) -> String {
        if receipt.gasUsed >= tx.gasLimit {
            return "out of gas (all \(tx.gasLimit) gas used)"
        }
        guard let call = try? createTaskCall(of: job, context) else { return "unknown reason" }
        return context.network.revertReason(of: call, from: context.wallet.address, gas: tx.gasLimit, block: receipt.blockNumber)
    }
}

struct WorkerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
