import BigInt
import Crynux
import Ethereum
import Foundation
import JobQueue

/// create: validate the arguments, sign createTask (stored before it is sent), broadcast it,
/// and read the task id from its receipt. Re-sends the same bytes, or replaces them at a higher
/// price (bounded) with the same nonce, until one of the job's transactions is mined. A nonce
/// that its createTask can never use (refused for good, cancelled, past the deadline) is filled
/// with a zero-value transfer, so that the wallet's later transactions are not stuck behind it.
struct CreateStage {
    /// How the last error of a job that waits for its wallet to be funded begins.
    static let waitingForFunds = "waiting for funds"

    func decide(_ job: Job, _ context: StageContext) throws -> StageOutcome {
        job.txNonce == nil ? try sign(job, context) : try confirm(job, context)
    }

    // MARK: before anything is signed

    private func sign(_ job: Job, _ context: StageContext) throws -> StageOutcome {
        let config = context.config
        // An approval (or the fill of its nonce) stored a moment ago: send it, then wait for it.
        if let signed = context.justSigned {
            return try sendApproval(job, signed, context)
        }
        if job.cancelRequested {
            return .cancel(note: "cancelled before any transaction was signed")
        }
        let kind: TaskKind, arguments: String
        switch try job.createInput() {
        case .ready(let k, let a): (kind, arguments) = (k, a)
        case .refused(let outcome): return outcome
        }
        let task: ValidatedTask
        do {
            task = try TaskArguments.validate(kind: kind, arguments: arguments, sdSchema: context.network.sdSchema)
        } catch {
            return .fail(reason: "invalid task arguments: \(error)", retryFrom: .create)
        }
        let request = TaskRequest(taskType: job.taskTypeOverride ?? task.taskType, taskHash: task.taskHash,
                                  vramLimit: job.vramLimitOverride ?? task.vramLimit, cap: task.cap,
                                  fee: job.feeWeiOverride ?? config.feePerResultWei * BigUInt(task.cap))
        let hydrogen = context.network.profile == .hydrogen
        if let refused = feeOverCeiling(hydrogen ? job.feeWeiOverride ?? config.tokenTaskFeeWei : request.fee, config) {
            return refused
        }
        // The queue prices a task at fee / cap (whole wei); at 0 it never leaves the queue.
        guard hydrogen || request.fee >= BigUInt(request.cap) else {
            return .fail(reason: "the fee of \(request.fee) wei is below one wei per result (\(request.cap)): such a task would never leave the queue; no transaction was sent",
                         retryFrom: .create)
        }
        // Admission control: a full queue evicts its cheapest task without refund, so a backlog
        // waits here, not on chain; on Hydrogen a createTask without three free nodes reverts
        // and costs its gas, so the free nodes are the room. The store counts our createTasks not
        // yet mined, across every worker and wallet, under one lock.
        let queue = try context.network.admissionState(for: request)
        // Era D: the last tenth of the queue is left to other creators. A task that arrives at a
        // full queue evicts the cheapest queued one, fee lost; filled by us to the last slot, the
        // queue makes every other creator's next task (signed before our reading) evict one of ours.
        let limit = hydrogen ? queue.limit : queue.limit - queue.limit / 10
        guard queue.size < limit else {
            return hydrogen ? waitForNodes(job, "the free nodes can start no such task", context) : .wait(after: config.admissionRetry)
        }
        // The store decides under its lock when signing; asking it first spares a backlog the
        // gas estimate (the node's costliest answer) of every create that would be refused.
        if queue.limit != .max {
            let counts = try context.admissionCounts(queue.readBlock, queue.sdWeight)
            if counts.onTheWay >= Int64(clamping: limit - queue.size) {
                if hydrogen {
                    return waitForNodes(job, "the free nodes can start \(queue.limit) such task(s) and our createTasks on their way may take \(counts.onTheWay)", context)
                }
                // A backlog many times the queue looks less often, all its jobs alike (so their
                // order holds): still far more looks than slots free up, at a fraction of the writes.
                let backlog = Double(counts.waiting) / Double(max(queue.limit, 1))
                return .wait(after: min(config.admissionRetry * max(1, backlog), config.admissionRetry * 10))
            }
        }
        let call = try context.network.createTaskCall(request)
        let conditions = try context.network.createConditions(for: call, from: context.wallet.address, withTip: config.useEIP1559)
        if let token = conditions.token, let outcome = try tokenGate(job, token, conditions, call, context) {
            return outcome
        }

        let gasLimit: UInt64
        if let fixed = config.gasLimit {
            gasLimit = fixed
        } else {
            switch conditions.estimate {
            case .gas(let estimate):
                // The estimate follows one path through createTask (start with free nodes, or
                // queue, maybe evicting); by the time it is mined another path may be taken, and
                // a start costs about twice a queueing. Unused gas is not charged.
                gasLimit = StageContext.gasLimit(doubling: estimate, floor: config.minimumGasLimit)
            case .reverts(let reason) where context.network.lacksFreeNodes(revertReason: reason):
                return waitForNodes(job, "createTask would revert (\(reason))", context)
            case .reverts(let reason) where reason.contains("insufficient funds") || reason.contains("insufficient balance"):
                // The node will not even simulate it: the wallet lacks the value plus gas.
                return waitForFunds(job, "the wallet \(context.wallet.address.checksummed) holds \(cnx(conditions.nativeBalance)) and the node refuses to estimate the createTask (\(reason))", context)
            case .reverts(let reason) where conditions.token != nil && (reason.contains("Not enough allowance") || reason.contains("Not enough tokens")):
                // The standing said enough: another createTask of the wallet was mined between the
                // two readings; read again. A contract that keeps saying so charges more than
                // the expected fee.
                guard job.stageAttempts >= 3 else {
                    return .wait(after: 1, failedTry: true, error: "createTask would revert (\(reason)); reading the wallet's standing again")
                }
                return .fail(reason: "createTask would revert (\(reason)) although the wallet holds and allows \(cnx(job.feeWeiOverride ?? config.tokenTaskFeeWei)): the Task contract charges more than that; raise --token-task-fee-wei; no transaction was sent",
                             retryFrom: .create)
            case .reverts(let reason):
                // The node simulated it and it reverts: refuse now, before any money moves.
                return .fail(reason: "createTask would revert (\(reason)); no transaction was sent", retryFrom: .create)
            }
        }
        let price = config.gasPriceWei ?? (config.useEIP1559 ? conditions.gasPrice * 2 : conditions.gasPrice)
        let tip = conditions.tip.map { min($0, price) }
        // A node refuses a transaction whose value plus gas limit × price exceeds the balance:
        // such a job waits for funds, without using a nonce, and resumes once they arrive.
        let cost = call.value + price * BigUInt(gasLimit)
        if conditions.nativeBalance < cost {
            return waitForFunds(job, "the wallet \(context.wallet.address.checksummed) holds \(cnx(conditions.nativeBalance)) and the createTask may cost \(cnx(cost)) (\(hydrogen ? "gas" : "fee and gas"))", context)
        }
        var draft = context.draft(.createTask, call, gasLimit: gasLimit, gasPrice: price, tip: tip,
                                  admission: queue.limit == .max ? nil
                                      : Admission(room: limit - queue.size, readBlock: queue.readBlock, sdWeight: queue.sdWeight))
        if let token = conditions.token {
            draft.tokenStanding = (min(token.balance, token.allowance), job.feeWeiOverride ?? config.tokenTaskFeeWei)
        }
        // Hydrogen's fee is what the contract pulls (recorded from the receipt), not the value.
        let facts = JobFacts(taskType: request.taskType, taskHash: request.taskHash, cap: request.cap, vramLimit: request.vramLimit,
                             feeWei: hydrogen ? nil : request.fee, walletAddress: context.wallet.address, chainId: context.wallet.chainId,
                             networkProfile: context.network.profile.rawValue, stamps: [.txSigned])
        var note = hydrogen ? "signed createTask (gas \(gasLimit))" : "signed createTask (fee \(request.fee) wei, gas \(gasLimit))"
        // The queue starts the best-paid task first and, when full, evicts the cheapest without
        // refund: a price below every queued task's is a risk the operator should see.
        let perResult = request.fee / BigUInt(request.cap)
        if let cheapest = queue.cheapestPrice, perResult < cheapest {
            note += "; warning: its price of \(perResult) wei per result is below the cheapest queued task's (\(cheapest)): it starts after all \(queue.size) queued tasks and is the first evicted when the queue is full"
        }
        return .sign(draft, facts: facts, note: note)
    }

    // MARK: Hydrogen: the fee is pulled in CNX, by allowance

    /// Before a createTask on a network that pulls its fee in tokens: the wallet must hold the
    /// fee and allow the Task contract to take it. A short balance fails the job with nothing
    /// spent; a short allowance signs one approval for the wallet (or waits for the one on its way).
    private func tokenGate(_ job: Job, _ token: TokenStanding, _ conditions: CreateConditions, _ call: ContractCall,
                           _ context: StageContext) throws -> StageOutcome? {
        let config = context.config
        let fee = job.feeWeiOverride ?? config.tokenTaskFeeWei
        guard token.balance >= fee else {
            return waitForFunds(job, "the wallet \(context.wallet.address.checksummed) holds \(cnx(token.balance)) in tokens and a task costs \(cnx(fee))", context)
        }
        let (pending, latest) = try context.approvals()
        guard token.allowance < fee else {
            // The allowance is there, so the approval was mined: its receipt goes on record.
            if let pending { _ = try context.minedReceipt(of: [pending]) }
            return nil
        }
        if let pending {
            if let (_, receipt) = try context.minedReceipt(of: [pending]) {
                // A reverted approval is not signed again and again, each paying gas.
                guard receipt.status else {
                    return .fail(reason: "approve \(pending.hash.hex) reverted in block \(receipt.blockNumber); no createTask was sent",
                                 retryFrom: .create)
                }
                return .wait(after: 0)  // mined: read the allowance again
            }
            // Not mined yet: whoever waits for it sends the same bytes again now and then (a
            // send lost to a node's hiccup would otherwise hold every job of the wallet).
            if context.seconds(since: pending.lastSentAt) >= config.rebroadcastAfter {
                return try sendApproval(job, pending, context)
            }
            return .wait(after: 1)
        }
        // The standing was read before the database said no approval is on its way: one mined
        // (and recorded) in between would not show in it. Read it again now, after the database.
        var readAgain: BigUInt?
        if config.approval != ApprovalPolicy.none,
           let fresh = try context.network.createConditions(for: call, from: context.wallet.address, withTip: false).token {
            guard fresh.allowance < fee else { return .wait(after: 0) }
            readAgain = fresh.allowance
        }
        let amount: BigUInt
        switch config.approval {
        case .none:
            return .fail(reason: "not enough allowance: the wallet \(context.wallet.address.checksummed) allows the Task contract \(cnx(token.allowance)) and a task costs \(cnx(fee)); approve more, or run with --approve; no transaction was sent",
                         retryFrom: .create)
        case .balance: amount = token.balance
        case .unlimited: amount = BigUInt(1) << 256 - 1
        case .amount(let fixed): amount = max(fixed, fee)
        }
        guard let approve = context.network.approveCall(amount: amount) else { return nil }
        let gasLimit: UInt64
        switch try context.network.estimateGas(approve, from: context.wallet.address) {
        case .gas(let estimate): gasLimit = StageContext.gasLimit(doubling: estimate, floor: 100_000)
        case .reverts(let reason):
            return .fail(reason: "approve would revert (\(reason)); no transaction was sent", retryFrom: .create)
        }
        let price = config.gasPriceWei ?? (config.useEIP1559 ? conditions.gasPrice * 2 : conditions.gasPrice)
        // The approval and the createTask after it both pay gas; refuse what the wallet cannot.
        let gasNeeded = price * BigUInt(gasLimit) + price * BigUInt(config.minimumGasLimit)
        guard conditions.nativeBalance >= gasNeeded else {
            return waitForFunds(job, "the wallet \(context.wallet.address.checksummed) holds \(cnx(conditions.nativeBalance)) for gas and an approval and a createTask need about \(cnx(gasNeeded))", context)
        }
        var draft = context.draft(.approve, approve, gasLimit: gasLimit, gasPrice: price, tip: conditions.tip.map { min($0, price) })
        draft.lastApprovalSeen = latest
        let facts = JobFacts(walletAddress: context.wallet.address, chainId: context.wallet.chainId,
                             networkProfile: context.network.profile.rawValue)
        return .sign(draft, facts: facts,
                     note: "the wallet's allowance (\(cnx(token.allowance))\(readAgain.map { ", read again: \(cnx($0))" } ?? "")) is short of a task's fee (\(cnx(fee))): signed approve(Task contract, \(cnx(amount)))\(latest.map { " (after approval \($0.hex))" } ?? "")")
    }

    /// Sends an approval (or the fill of its nonce) just stored; the keeper re-sends it later if
    /// needed, and fills its nonce if it is never mined.
    private func sendApproval(_ job: Job, _ tx: StoredTransaction, _ context: StageContext) throws -> StageOutcome {
        switch try context.broadcast(tx) {
        case .accepted:
            return .wait(after: 1)
        case .nonceTooLow:
            // Used by a transaction the database does not know (lost records): this approval
            // can never be mined, so no job waits for it; reconciliation raises the nonce.
            guard let user = try context.network.transactionThatUsed(nonce: tx.nonce, of: context.wallet.address), user != tx.hash else {
                return .wait(after: 1)
            }
            context.refused(tx, "nonce \(tx.nonce) was used by transaction \(user.hex)")
            try context.reconcileWallet()
            context.lostRecords(fromNonce: tx.nonce)
            return .wait(after: 1, note: "approve \(tx.hash.hex) can never be mined: its nonce \(tx.nonce) was used by transaction \(user.hex), which the database does not know")
        case .underpriced(let message):
            context.refused(tx, message)
            return .wait(after: 1, note: "node refused \(tx.purpose.rawValue): \(message)")
        case .refusedForGood(let message):
            context.refused(tx, message)
            guard tx.purpose == .approve else {
                return .wait(after: context.config.backoff(attempt: job.stageAttempts), failedTry: true,
                             error: "the wallet cannot even pay for the transfer that fills nonce \(tx.nonce): \(message)")
            }
            return .sign(try NonceFollower(context: context).fill([tx]), note: "node refused approve for good (\(message)): nonce \(tx.nonce) is filled instead")
        case .rejected(let message), .nonceGap(_, let message):
            // Stored, so the wallet keeper sends it again.
            return .wait(after: context.config.backoff(attempt: job.stageAttempts), failedTry: true, error: "node refused approve: \(message)")
        }
    }

    /// A wallet short of what the next transaction costs: the job waits (no nonce is used, nothing
    /// is sent) and looks again every `fundsRetry`, without counting failed tries. The first wait
    /// goes into the job's history; the rest only refresh its last error.
    private func waitForFunds(_ job: Job, _ what: String, _ context: StageContext) -> StageOutcome {
        let error = "\(Self.waitingForFunds): \(what); nothing was sent"
        let first = !(job.lastError?.hasPrefix(Self.waitingForFunds) ?? false)
        return .wait(after: context.config.fundsRetry, note: first ? error : nil, error: error)
    }

    /// A network without a queue refuses a createTask while too few nodes are free: nothing is
    /// spent by waiting, up to the queue timeout (counted from the first wait, which a create that
    /// lost the race for the nodes by its block keeps).
    private func waitForNodes(_ job: Job, _ why: String, _ context: StageContext) -> StageOutcome {
        let config = context.config
        if let since = job.taskQueuedAt, context.seconds(since: since) > config.queueTimeout {
            return .fail(reason: "no free nodes for \(Int(config.queueTimeout)) s (\(why)); no transaction was sent",
                         retryFrom: .create)
        }
        guard job.taskQueuedAt == nil else { return .wait(after: config.admissionRetry) }
        return .wait(after: config.admissionRetry, facts: JobFacts(stamps: [.taskQueued]),
                     note: "waiting for free nodes: \(why); nothing was sent")
    }

    // MARK: signed: send until mined

    private func confirm(_ job: Job, _ context: StageContext) throws -> StageOutcome {
        let config = context.config
        var txs = try context.transactions(.createTask)
        if let signed = context.justSigned, !txs.contains(where: { $0.hash == signed.hash }) { txs.append(signed) }
        let live = txs.filter { $0.refusedAt == nil }
        guard let latest = live.last ?? txs.last else {
            return .fail(reason: "job has a nonce but no stored createTask transaction", retryFrom: .create)
        }
        let toSend: StoredTransaction
        if let signed = context.justSigned {
            // Stored a moment ago: send it now.
            toSend = signed
        } else {
            // The deadline counts from the first signature: time spent waiting for room, funds or
            // nodes before it must not leave a fresh createTask a second to live.
            let creates = txs.filter { $0.purpose == .createTask }
            let giveUp = job.cancelRequested ? "cancel requested before createTask was mined"
                : context.seconds(since: creates.first?.signedAt ?? context.now) > config.createDeadline
                ? "createTask not mined within \(Int(config.createDeadline)) s of its signature" : nil
            // Hydrogen's fee is pulled in CNX (the value is 0): the share is of that fee.
            let fee = context.network.profile == .hydrogen ? job.tokenFeeWei ?? job.feeWeiOverride ?? config.tokenTaskFeeWei : latest.value
            let ceiling = config.gasPriceCeiling(firstPrice: creates.first?.gasPrice ?? latest.gasPrice, gasLimit: latest.gasLimit, fee: fee)
            switch try NonceFollower(context: context).next(txs, replacement: .sameCall(try createTaskCall(of: job, context), ceiling: ceiling),
                                                            giveUp: giveUp) {
            case .mined(let tx, let receipt): return try mined(job, tx, receipt, context)
            case .wait: return .wait(after: 1)
            case .sign(let draft, let why): return .sign(draft, note: why)
            case .send(let tx): toSend = tx
            }
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
            return try nonceUsedElsewhere(job, toSend.nonce, txs, context)
        case .underpriced(let message):
            // The one in the pool stays the job's latest; this one is never sent again.
            context.refused(toSend, message)
            return .wait(after: 1, note: "node refused a replacement: \(message)")
        case .refusedForGood(let message):
            context.refused(toSend, message)
            guard toSend.purpose == .createTask else {
                return .wait(after: config.backoff(attempt: job.stageAttempts), failedTry: true,
                             error: "the wallet cannot even pay for the transfer that fills nonce \(toSend.nonce): \(message)")
            }
            return .sign(try NonceFollower(context: context).fill(txs),
                         note: "node refused createTask for good (\(message)): nonce \(toSend.nonce) is filled instead")
        case .nonceGap(_, let message):
            // The nonces before ours did not reach the node yet (their senders will, and so did we
            // where we could): soon again, not as a failure of this job.
            return .wait(after: 1, error: "node refused createTask: \(message)")
        case .rejected(let message):
            return .wait(after: config.backoff(attempt: job.stageAttempts), note: "node refused createTask: \(message)", failedTry: true,
                         error: "node refused createTask: \(message)")
        }
    }

    /// The node says the nonce is used, but none of our transactions has a receipt (yet). Only
    /// the chain showing another transaction at that nonce proves ours was never mined; until
    /// then (a lagging node) the job keeps looking and never becomes payable again. A nonce of our
    /// wallet used by a transaction the job does not know means the database lost records (a
    /// restore, a failover): that transaction may even be this job's own lost createTask. The job
    /// is unsigned again and the wallet marked for reconciliation, which adopts lost tasks (by
    /// their task hash) before anything new is signed.
    private func nonceUsedElsewhere(_ job: Job, _ nonce: UInt64, _ txs: [StoredTransaction], _ context: StageContext) throws -> StageOutcome {
        guard let user = try context.network.transactionThatUsed(nonce: nonce, of: context.wallet.address) else {
            return .wait(after: context.config.backoff(attempt: job.stageAttempts), failedTry: true,
                         error: "nonce \(nonce) is used, but the node does not show by which transaction yet; looking again")
        }
        if txs.contains(where: { $0.hash == user }) {
            return .wait(after: 1, note: "nonce \(nonce) was used by this job's transaction \(user.hex); waiting for its receipt")
        }
        try context.reconcileWallet()
        context.lostRecords(fromNonce: nonce)
        return .unsign(note: "nonce \(nonce) was used by transaction \(user.hex), which the database does not know (records were lost): this createTask can never be mined and nothing was paid; the job is unsigned again and waits until the wallet's lost tasks are adopted")
    }

    /// The job's createTask call, rebuilt from its stored facts (for a replacement or a replay).
    private func createTaskCall(of job: Job, _ context: StageContext) throws -> ContractCall {
        guard let type = job.taskType, let hash = job.taskHash, let vram = job.vramLimit, let cap = job.cap else {
            throw WorkerError("job \(job.id) lacks the createTask facts")
        }
        return try context.network.createTaskCall(TaskRequest(taskType: type, taskHash: hash, vramLimit: vram, cap: cap,
                                                              fee: job.feeWei ?? 0))
    }

    private func mined(_ job: Job, _ tx: StoredTransaction, _ receipt: TransactionReceipt, _ context: StageContext) throws -> StageOutcome {
        var facts = JobFacts(txHash: tx.hash, txBlockNumber: receipt.blockNumber, stamps: [.txMined])
        if tx.purpose == .fillNonce {
            if job.cancelRequested {
                return .cancel(note: "nonce \(tx.nonce) was filled by tx \(tx.hash.hex); no task was created", facts: facts)
            }
            return .fail(reason: "createTask was never mined (\(job.lastError ?? "past its deadline")); nonce \(tx.nonce) was filled by a zero-value transfer and no task was created",
                         retryFrom: .create, facts: facts)
        }
        guard receipt.status else {
            let reason = revertReason(job, tx, receipt, context)
            // Hydrogen: the nodes the estimate saw were taken (by other creators) before the block;
            // the revert took nothing but gas. The job waits for free nodes again, up to
            // --queue-timeout from its first wait, however often it loses that race.
            if context.network.lacksFreeNodes(revertReason: reason) {
                let config = context.config
                if let since = job.taskQueuedAt, context.seconds(since: since) > config.queueTimeout {
                    return .fail(reason: "createTask reverted: \(reason); no free nodes for \(Int(config.queueTimeout)) s", retryFrom: .create, facts: facts)
                }
                return .recreate(note: "createTask \(tx.hash.hex) reverted (\(reason)): too few free nodes by its block; waiting for free nodes again",
                                 waitingForNodes: true)
            }
            return .fail(reason: "createTask reverted: \(reason)", retryFrom: .create, facts: facts)
        }
        facts.tokenFeeWei = context.network.tokenFeePaid(in: receipt, by: context.wallet.address)
        guard let taskId = context.network.createdTaskId(in: receipt) else {
            // Paid, but no task to follow: nothing can continue it, and paying again needs a person.
            return .fail(reason: "createTask was mined in block \(receipt.blockNumber) but no event of the Task contract names its task",
                         retryFrom: .poll, facts: facts)
        }
        facts.taskId = taskId
        if job.cancelRequested {
            // The task exists: cancel it on chain for the refund (its arguments are never uploaded).
            facts.refundReason = "cancelled by operator"
            return .advance(to: .poll, facts: facts,
                            note: "task \(taskId) created in block \(receipt.blockNumber), then cancelled as requested: cancelling it on chain for the refund")
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

/// What a create stage starts from: the job's kind and its exact arguments, or the outcome that
/// fails it (an unknown kind, arguments over the Relay's request limit, which claims leave behind).
enum CreateInput {
    case ready(TaskKind, String)
    case refused(StageOutcome)
}

extension Job {
    func createInput() throws -> CreateInput {
        guard let kind = TaskKind(rawValue: self.kind) else {
            return .refused(.fail(reason: "unknown job kind \(self.kind)", retryFrom: .create))
        }
        guard let arguments = taskArgs else {
            if let size = taskArgsBytes, size > JobStore.claimedArgumentsLimit {
                return .refused(.fail(reason: "invalid task arguments: task_args: must fit in the Relay's 32 MiB request limit (got \(size) bytes)",
                                      retryFrom: .create))
            }
            throw WorkerError("job \(id) was claimed for create without its arguments")
        }
        return .ready(kind, arguments)
    }
}

/// The outcome of a job whose task would cost more than `--max-fee-per-job`: failed, nothing paid.
func feeOverCeiling(_ fee: BigUInt, _ config: WorkerConfig) -> StageOutcome? {
    guard let ceiling = config.maxFeePerJobWei, fee > ceiling else { return nil }
    return .fail(reason: "the task's fee of \(cnx(fee)) is above --max-fee-per-job (\(cnx(ceiling))); nothing was paid", retryFrom: .create)
}
