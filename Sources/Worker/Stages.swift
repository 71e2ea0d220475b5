import BigInt
import Crynux
import Ethereum
import Foundation
import HTTP
import JobQueue
import Postgres

/// The stage machine: one call moves one claimed job (or a batch of polls) one step, and
/// writes the outcome under the job's lease.
struct Stages {
    let network: Network
    let worker: String
    let log: Log
    var config: WorkerConfig { network.config }
    var transactions: Transactions { Transactions(network: network) }

    // MARK: Outcomes

    func advance(_ db: PostgresConnection, _ job: Job, to stage: JobStage, after delay: Double = 0,
                 fields: [(String, (any PostgresEncodable)?)] = [], detail: String) throws {
        guard try JobLeases.apply(db, JobUpdate(stage: stage, runAfter: delay, fields: fields, detail: detail), to: job, worker: worker) else {
            throw LeaseLost()
        }
        log.info("job \(job.id) \(job.stage.rawValue) -> \(stage.rawValue): \(detail)")
    }

    /// Not done yet: due again later. A plain "still waiting" does not count as a failed try.
    func again(_ db: PostgresConnection, _ job: Job, after delay: Double, detail: String? = nil, failedTry: Bool = false,
               fields: [(String, (any PostgresEncodable)?)] = []) throws {
        let update = JobUpdate(runAfter: delay, fields: fields, detail: detail, countsAsAttempt: failedTry, resetsAttempts: !failedTry)
        guard try JobLeases.apply(db, update, to: job, worker: worker) else { throw LeaseLost() }
    }

    /// Ends the job as failed with a one-sentence reason. `retry` is where `crynux-worker retry`
    /// may restart it: `.create` only when no on-chain task of this job can still succeed.
    func fail(_ db: PostgresConnection, _ job: Job, _ reason: String, retry: JobStage,
              fields: [(String, (any PostgresEncodable)?)] = []) throws {
        let update = JobUpdate(status: .failed, fields: fields + [("last_error", reason), ("retry_stage", retry.rawValue)], detail: reason)
        guard try JobLeases.apply(db, update, to: job, worker: worker) else { throw LeaseLost() }
        log.info("job \(job.id) failed in \(job.stage.rawValue): \(reason)")
    }

    func cancelNow(_ db: PostgresConnection, _ job: Job, fields: [(String, (any PostgresEncodable)?)] = [], detail: String) throws {
        let update = JobUpdate(status: .cancelled, fields: fields + [("last_error", "cancelled by operator")], detail: detail)
        guard try JobLeases.apply(db, update, to: job, worker: worker) else { throw LeaseLost() }
        log.info("job \(job.id) cancelled: \(detail)")
    }

    // MARK: create

    func create(_ db: PostgresConnection, _ job: Job) throws {
        if job.txNonce == nil {
            guard try signCreateTask(db, job) else { return }
        }
        // Reload: signing wrote the on-chain facts (same lease token).
        guard let current = try JobStore.job(db, id: job.id), current.leaseToken == job.leaseToken else { throw LeaseLost() }
        try confirmCreateTask(db, current)
    }

    /// Validates, prices and signs createTask. Returns false when the job ended here.
    private func signCreateTask(_ db: PostgresConnection, _ job: Job) throws -> Bool {
        if job.cancelRequested {
            try cancelNow(db, job, detail: "cancelled before any transaction was signed")
            return false
        }
        guard let kind = TaskKind(rawValue: job.kind) else {
            try fail(db, job, "unknown job kind \(job.kind)", retry: .create)
            return false
        }
        let task: ValidatedTask
        do {
            task = try TaskArguments.validate(kind: kind, arguments: job.taskArgs)
        } catch {
            try fail(db, job, "invalid task arguments: \(error)", retry: .create)
            return false
        }
        let taskType = job.taskTypeOverride.map { UInt64(bitPattern: Int64($0)) } ?? task.taskType
        let vram = job.vramLimitOverride.map { UInt64($0) } ?? task.vramLimit
        let fee = job.feeWeiOverride.flatMap { BigUInt($0) } ?? config.feePerResultWei * BigUInt(task.cap)
        let data = network.task.createTaskCall(taskType: taskType, taskHash: task.taskHash, vramLimit: vram, cap: task.cap)

        let gasLimit: UInt64
        if let fixed = config.gasLimit {
            gasLimit = fixed
        } else {
            do {
                let estimate = try network.rpc.estimateGas(CallRequest(from: network.address, to: network.task.address, data: data,
                                                                       value: fee, gas: nil, gasPrice: nil))
                // The estimate follows one path through createTask (start with free nodes, or
                // queue, maybe evicting); by the time it is mined another path may be taken, and
                // a start costs about twice a queueing. Unused gas is not charged.
                gasLimit = max(estimate * 2, config.minimumGasLimit)
            } catch EthereumClientError.rpc(let error) where error.revertReason != nil || error.code == 3 {
                // The node simulated it and it reverts: refuse now, before any money moves.
                let reason = error.revertReason?.description ?? error.message
                try fail(db, job, "createTask would revert (\(reason)); no transaction was sent", retry: .create)
                return false
            }
        }
        let gasPrice = try transactions.currentGasPrice()
        let stored = try transactions.signAndStore(
            db, job: job, worker: worker, purpose: .createTask, data: data, value: fee, gasLimit: gasLimit, gasPrice: gasPrice,
            jobFields: [("task_type", Int64(bitPattern: taskType)), ("task_hash", task.taskHash.hex), ("cap", Int64(task.cap)),
                        ("vram_limit", Int64(vram)), ("fee_wei", fee.description), ("wallet_address", network.walletHex),
                        ("chain_id", Int64(network.chainId)), ("tx_signed_at", Date())],
            detail: "signed createTask (fee \(fee) wei, gas \(gasLimit))")
        log.info("job \(job.id) signed createTask nonce \(stored.nonce) tx \(stored.hash)")
        return true
    }

    private func confirmCreateTask(_ db: PostgresConnection, _ job: Job) throws {
        let txs = try transactions.transactions(db, of: job, purpose: .createTask)
        guard let latest = txs.last else {
            try fail(db, job, "job has a nonce but no stored createTask transaction", retry: .create)
            return
        }
        if let (tx, receipt) = try transactions.minedReceipt(db, of: txs) {
            try createTaskMined(db, job, tx, receipt)
            return
        }
        let sinceSent = latest.lastSentAt.map { -$0.timeIntervalSinceNow } ?? .infinity
        guard sinceSent >= config.rebroadcastAfter else {
            try again(db, job, after: 1)
            return
        }
        var toSend = latest
        let sinceFirst = -(txs.first?.signedAt.timeIntervalSinceNow ?? 0)
        if latest.lastSentAt != nil, sinceFirst >= config.replaceAfter * Double(txs.count) {
            // Not mined for long: same nonce, higher price. Both are kept; whichever lands counts.
            let price = max(BigUInt(Double(latest.gasPrice) * config.replacementPriceFactor), latest.gasPrice + 1, try transactions.currentGasPrice())
            toSend = try transactions.signAndStore(
                db, job: job, worker: worker, purpose: .createTask, nonce: latest.nonce, data: try createTaskCalldata(job),
                value: BigUInt(job.feeWei ?? "0") ?? 0, gasLimit: latest.gasLimit, gasPrice: price, jobFields: [],
                detail: "createTask not mined after \(Int(sinceFirst)) s: replaced at gas price \(price)")
        }
        switch try transactions.broadcast(db, toSend) {
        case .accepted:
            if let (tx, receipt) = try transactions.minedReceipt(db, of: txs + (toSend.hash == latest.hash ? [] : [toSend])) {
                try createTaskMined(db, job, tx, receipt)
            } else {
                try again(db, job, after: 1)
            }
        case .nonceTooLow:
            if let (tx, receipt) = try transactions.minedReceipt(db, of: try transactions.transactions(db, of: job, purpose: .createTask)) {
                try createTaskMined(db, job, tx, receipt)
                return
            }
            // The nonce was used by a transaction that is not this job's: ours can never land.
            try network.reconcileWallet(db)
            try fail(db, job, "nonce \(latest.nonce) was used by a transaction that is not this job's, so its createTask can never be mined; no task was created",
                     retry: .create)
        case .rejected(let message):
            try again(db, job, after: config.backoff(attempt: job.stageAttempts), detail: "node refused createTask: \(message)",
                      failedTry: true, fields: [("last_error", "node refused createTask: \(message)")])
        }
    }

    private func createTaskCalldata(_ job: Job) throws -> [UInt8] {
        guard let type = job.taskType, let hash = job.taskHash.flatMap({ [UInt8](hex: $0) }), hash.count == 32,
              let vram = job.vramLimit, let cap = job.cap else {
            throw WorkerError("job \(job.id) lacks the createTask facts")
        }
        return network.task.createTaskCall(taskType: UInt64(bitPattern: Int64(type)), taskHash: hash, vramLimit: UInt64(vram), cap: UInt64(cap))
    }

    private func createTaskMined(_ db: PostgresConnection, _ job: Job, _ tx: StoredTransaction, _ receipt: TransactionReceipt) throws {
        var fields: [(String, (any PostgresEncodable)?)] = [("tx_hash", tx.hash), ("tx_block_number", Int64(receipt.blockNumber)), ("tx_mined_at", Date())]
        guard receipt.status else {
            let reason = revertReason(of: job, tx: tx, receipt: receipt)
            try fail(db, job, "createTask reverted: \(reason)", retry: .create, fields: fields)
            return
        }
        guard let taskId = network.task.createdTaskId(in: receipt) else {
            try fail(db, job, "createTask was mined in block \(receipt.blockNumber) but has no TaskPending event of the Task contract", retry: .poll,
                     fields: fields)
            return
        }
        fields.append(("task_id", Int64(taskId)))
        if job.cancelRequested {
            try cancelNow(db, job, fields: fields, detail: "task \(taskId) created in block \(receipt.blockNumber), then cancelled as requested (its arguments are never uploaded)")
            return
        }
        try advance(db, job, to: .upload, fields: fields, detail: "task \(taskId) created in block \(receipt.blockNumber) by tx \(tx.hash)")
    }

    /// Replays the reverted transaction with eth_call on the state before its block.
    private func revertReason(of job: Job, tx: StoredTransaction, receipt: TransactionReceipt) -> String {
        if receipt.gasUsed >= tx.gasLimit {
            return "out of gas (all \(tx.gasLimit) gas used)"
        }
        let block = receipt.blockNumber
        guard let data = try? createTaskCalldata(job) else { return "unknown reason" }
        let call = CallRequest(from: network.address, to: network.task.address, data: data, value: BigUInt(job.feeWei ?? "0"),
                               gas: tx.gasLimit, gasPrice: nil)
        do {
            _ = try network.rpc.call(call, block: .number(block > 0 ? block - 1 : 0))
            return "unknown reason (the replay did not revert; out of gas at limit \(tx.gasLimit)?)"
        } catch EthereumClientError.rpc(let error) {
            return error.revertReason?.description ?? error.message
        } catch {
            return "unknown reason (replay failed: \(error))"
        }
    }

    // MARK: upload

    func upload(_ db: PostgresConnection, _ job: Job) throws {
        guard let taskId = job.taskId else { throw WorkerError("job \(job.id) is in upload without a task id") }
        if job.cancelRequested {
            try cancelNow(db, job, detail: "cancelled before the arguments were uploaded")
            return
        }
        let elapsed = -job.stageEnteredAt.timeIntervalSinceNow
        if elapsed > config.uploadDeadline {
            try fail(db, job, "the relay did not accept the task arguments within \(Int(config.uploadDeadline)) s (last error: \(job.lastError ?? "none"))",
                     retry: .upload)
            return
        }
        switch try network.relay.uploadTaskArguments(taskId: UInt64(taskId), arguments: job.taskArgs) {
        case .uploaded:
            try advance(db, job, to: .poll, after: config.pollInterval, fields: [("args_uploaded_at", Date())], detail: "arguments uploaded to the relay")
        case .alreadyUploaded:
            try advance(db, job, to: .poll, after: config.pollInterval, fields: [("args_uploaded_at", Date())], detail: "arguments were already on the relay")
        case .notYetOnChain:
            // The relay has not synced the block yet; it usually does within a second.
            try again(db, job, after: min(config.pollInterval, 1))
        case .rejected(let message):
            try fail(db, job, "the relay refused the task arguments: \(message)", retry: .upload)
        }
    }

    // MARK: poll

    /// Polls many tasks with one JSON-RPC batch of getTask calls.
    func poll(_ db: PostgresConnection, _ jobs: [Job]) throws {
        let live = try jobs.filter { job in
            if job.cancelRequested { try cancelNow(db, job, detail: "cancelled while the task ran"); return false }
            return true
        }
        guard !live.isEmpty else { return }
        let requests = live.map { job in
            (method: "eth_call", params: EthereumClient.callParams(
                CallRequest(from: nil, to: network.task.address, data: network.task.getTaskCall(taskId: UInt64(job.taskId ?? 0)),
                            value: nil, gas: nil, gasPrice: nil), block: .latest))
        }
        let answers = try network.rpc.batch(requests)
        for (job, answer) in zip(live, answers) {
            do {
                switch answer {
                case .success(let json):
                    try pollOne(db, job, try TaskContract.decodeTaskInfo(try EthereumClient.decodeCallResult(json)))
                case .failure(let error):
                    try transientFailure(db, job, error)
                }
            } catch is LeaseLost {
                log.info("job \(job.id): lease lost during poll; another worker has it")
            } catch let error as PostgresError {
                throw error
            } catch {
                try transientFailure(db, job, error)
            }
        }
    }

    private func pollOne(_ db: PostgresConnection, _ job: Job, _ info: TaskInfo) throws {
        guard let taskId = job.taskId.map({ UInt64($0) }) else { throw WorkerError("job \(job.id) is in poll without a task id") }
        let waited = -job.stageEnteredAt.timeIntervalSinceNow
        let nextPoll = min(max(config.pollInterval, waited / 10), config.pollIntervalMax)
        if info.exists {
            if info.succeeded {
                try advance(db, job, to: .fetch, fields: [("task_finished_at", Date()), ("result_node", info.resultNode.checksummed)],
                            detail: "task \(taskId) succeeded on chain (result node \(info.resultNode.checksummed))")
                return
            }
            if info.aborted {
                try finishFromLogs(db, job, taskId: taskId, fallback: nextPoll)
                return
            }
            let deadline = Date(timeIntervalSince1970: Double(info.timeout))
            let fields: [(String, (any PostgresEncodable)?)] = job.taskDeadline == nil && info.timeout > 0 ? [("task_deadline", deadline)] : []
            if info.timeout > 0, Date() > deadline.addingTimeInterval(config.cancelGrace) {
                try cancelOverdueTask(db, job, taskId: taskId)
                return
            }
            try again(db, job, after: nextPoll, fields: fields)
            return
        }
        // id 0: queued, or finished and deleted. The outcome logs tell the latter apart.
        if try finishFromLogs(db, job, taskId: taskId, fallback: nil) { return }
        let queued = try TaskQueueContract.decodeBool(try network.rpc.call(
            CallRequest(from: nil, to: network.queue.address, data: network.queue.includeCall(taskId: taskId), value: nil, gas: nil, gasPrice: nil)))
        if queued {
            // One history line when the task is first seen queued, not one per poll.
            let noted = try db.query("""
                SELECT EXISTS (SELECT 1 FROM crynux.job_events WHERE job_id = $1 AND at >= $2 AND detail LIKE '% is queued%') AS noted
                """, [job.id, job.stageEnteredAt])[0].get("noted", as: Bool.self)
            try again(db, job, after: nextPoll, detail: noted ? nil : "task \(taskId) is queued on chain, waiting for free nodes")
        } else if job.stageAttempts >= 10 {
            try fail(db, job, "task \(taskId) is neither running, queued nor finished on chain", retry: .poll)
        } else {
            // Between queue and start, or a lagging node: look again soon.
            try again(db, job, after: config.backoff(attempt: job.stageAttempts), failedTry: true)
        }
    }

    /// Looks for TaskSuccess/TaskAborted of the task (a targeted eth_getLogs, no block tracking).
    /// Returns true when it moved the job on.
    @discardableResult
    private func finishFromLogs(_ db: PostgresConnection, _ job: Job, taskId: UInt64, fallback: Double?) throws -> Bool {
        let logs = try network.rpc.getLogs(network.task.outcomeFilter(taskId: taskId, fromBlock: UInt64(job.txBlockNumber ?? 0)))
        for entry in logs {
            switch TaskContract.decodeOutcome(entry) {
            case .succeeded(let node):
                try advance(db, job, to: .fetch, fields: [("task_finished_at", Date()), ("result_node", node.checksummed)],
                            detail: "task \(taskId) succeeded on chain (result node \(node.checksummed))")
                return true
            case .aborted(let reason):
                try fail(db, job, "task \(taskId) was aborted on chain: \(reason)", retry: .create,
                         fields: [("task_finished_at", Date()), ("abort_reason", reason)])
                return true
            case nil:
                continue
            }
        }
        if let fallback { try again(db, job, after: fallback) }
        return false
    }

    /// The task is past its on-chain deadline: cancel it for the refund. The poll that follows
    /// sees the TaskAborted("Task Cancelled") and fails the job with it.
    private func cancelOverdueTask(_ db: PostgresConnection, _ job: Job, taskId: UInt64) throws {
        let sent = try transactions.transactions(db, of: job, purpose: .cancelTask)
        if let latest = sent.last {
            if try transactions.minedReceipt(db, of: sent) == nil,
               latest.lastSentAt.map({ -$0.timeIntervalSinceNow >= config.rebroadcastAfter }) ?? true {
                _ = try transactions.broadcast(db, latest)
            }
            try again(db, job, after: 2)
            return
        }
        let data = network.task.cancelTaskCall(taskId: taskId)
        let gasLimit: UInt64
        do {
            let estimate = try network.rpc.estimateGas(CallRequest(from: network.address, to: network.task.address, data: data,
                                                                   value: nil, gas: nil, gasPrice: nil))
            gasLimit = estimate + estimate / 4 + 10_000
        } catch EthereumClientError.rpc(let error) where error.revertReason != nil || error.code == 3 {
            // e.g. "Task has not exceeded the deadline yet" (clock skew) or already gone: poll on.
            try again(db, job, after: config.pollIntervalMax, detail: "cancelTask would revert (\(error.revertReason?.description ?? error.message)); polling on")
            return
        }
        let stored = try transactions.signAndStore(
            db, job: job, worker: worker, purpose: .cancelTask, data: data, value: 0, gasLimit: gasLimit,
            gasPrice: try transactions.currentGasPrice(), jobFields: [],
            detail: "task \(taskId) is past its deadline: cancelTask for the refund")
        _ = try transactions.broadcast(db, stored)
        try again(db, job, after: 2)
    }

    // MARK: fetch

    func fetch(_ db: PostgresConnection, _ job: Job) throws {
        guard let taskId = job.taskId.map({ UInt64($0) }), let kind = TaskKind(rawValue: job.kind) else {
            throw WorkerError("job \(job.id) is in fetch without a task id")
        }
        if -job.stageEnteredAt.timeIntervalSinceNow > config.fetchDeadline {
            try fail(db, job, "the results of task \(taskId) could not be downloaded within \(Int(config.fetchDeadline)) s (last error: \(job.lastError ?? "not uploaded yet"))",
                     retry: .fetch)
            return
        }
        let count = kind == .gpt ? 1 : max(job.cap ?? 1, 1)
        var files: [(index: Int, data: [UInt8], contentType: String)] = []
        for index in 0..<count {
            switch try network.relay.downloadResult(taskId: taskId, index: index) {
            case .data(let bytes, let contentType):
                files.append((index, bytes, contentType))
            case .notReady:
                // The result node uploads shortly after TaskSuccess; look again at the poll pace.
                try again(db, job, after: config.pollInterval)
                return
            case .rejected(let message):
                try fail(db, job, "the relay refused result \(index) of task \(taskId): \(message)", retry: .fetch)
                return
            }
        }
        try db.transaction { db in
            for file in files {
                try db.execute("""
                    INSERT INTO crynux.job_results (job_id, result_index, content_type, data) VALUES ($1, $2, $3, $4)
                    ON CONFLICT (job_id, result_index) DO UPDATE SET content_type = EXCLUDED.content_type, data = EXCLUDED.data, stored_at = now()
                    """, [job.id, Int32(file.index), file.contentType, file.data])
            }
            let bytes = files.reduce(0) { $0 + $1.data.count }
            let update = JobUpdate(status: .succeeded, fields: [("results_stored_at", Date()), ("last_error", nil)],
                                   detail: "stored \(files.count) result(s), \(bytes) bytes")
            guard try JobLeases.apply(db, update, to: job, worker: worker) else { throw LeaseLost() }
        }
        log.info("job \(job.id) succeeded: \(files.count) result(s) stored")
    }

    // MARK: errors

    /// A network hiccup (timeout, 5xx, connection refused): due again with backoff.
    func transientFailure(_ db: PostgresConnection, _ job: Job, _ error: any Error) throws {
        let delay = config.backoff(attempt: job.stageAttempts)
        let message = "\(error)"
        log.info("job \(job.id) \(job.stage.rawValue): \(message); retrying in \(String(format: "%.1f", delay)) s")
        try again(db, job, after: delay, detail: "retrying after error: \(message)", failedTry: true, fields: [("last_error", message)])
    }
}
