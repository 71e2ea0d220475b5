import Crynux
import Ethereum
import Foundation
import JobQueue
import Postgres

/// The pipeline, read top to bottom. Stage order and claim rank are `JobStage`'s; this is the
/// code that decides each stage, and the loop that applies what it decided.
///
/// Era D and Hydrogen (a transaction per task):
///
/// | stage  | decided by    | moves on when                                                  |
/// |--------|---------------|----------------------------------------------------------------|
/// | create | `CreateStage` | the createTask receipt names the task (or it reverted: failed) |
/// | upload | `UploadStage` | the Relay has the arguments                                    |
/// | poll   | `PollStage`   | the task succeeded on chain (or was aborted: failed)           |
/// | fetch  | `FetchStage`  | every result is stored: succeeded                              |
///
/// Lithium (signed requests to the Relay alone):
///
/// | stage    | decided by             | moves on when                                             |
/// |----------|------------------------|-----------------------------------------------------------|
/// | create   | `LithiumCreateStage`   | the Relay has the task (its request stored first)         |
/// | poll     | `LithiumPollStage`     | ScoreReady/ErrorReported: validate; EndSuccess: fetch     |
/// | validate | `LithiumValidateStage` | the Relay took the VRF validation (alone or as a group)   |
/// | fetch    | `LithiumFetchStage`    | every result is stored: succeeded                         |
///
/// A stage never writes: it returns a `StageOutcome`, and `JobStore` applies it under the lease,
/// with its history row, in one database transaction. A `.sign` outcome is stored first and the
/// stage runs again with the stored transaction, so nothing reaches the network before it is
/// durable; a `.prepare` outcome (a Relay task about to be created, a VRF proof) the same way.
struct Pipeline {
    /// What the stages speak to.
    enum Backend {
        /// Era D, Hydrogen: the chain and its Relay.
        case chain(any TaskNetwork)
        /// Lithium: the Relay, one client per wallet (each signs with its key).
        case lithium([Address: any LithiumRelay])
    }

    let backend: Backend
    /// The wallets this worker holds; claims only return jobs that belong to one of them (or to none yet).
    let wallets: [Wallet]
    let config: WorkerConfig
    let worker: String
    let log: WorkerLog
    /// Told when a job applied here is due again: the process's claimer wakes then, without
    /// asking the database.
    var dueAgain: @Sendable (Date) -> Void = { _ in }
    /// Whether the process is stopping: a job then goes no further in this thread.
    var isStopping: @Sendable () -> Bool = { false }

    let create = CreateStage()
    let upload = UploadStage()
    let poll = PollStage()
    let fetch = FetchStage()
    let lithiumCreate = LithiumCreateStage()
    let lithiumPoll = LithiumPollStage()
    let lithiumValidate = LithiumValidateStage()
    let lithiumFetch = LithiumFetchStage()

    init(network: any TaskNetwork, wallets: [Wallet], config: WorkerConfig, worker: String, log: WorkerLog) {
        self.init(backend: .chain(network), wallets: wallets, config: config, worker: worker, log: log)
    }

    init(relays: [Address: any LithiumRelay], wallets: [Wallet], config: WorkerConfig, worker: String, log: WorkerLog) {
        self.init(backend: .lithium(relays), wallets: wallets, config: config, worker: worker, log: log)
    }

    init(backend: Backend, wallets: [Wallet], config: WorkerConfig, worker: String, log: WorkerLog) {
        self.backend = backend
        self.wallets = wallets
        self.config = config
        self.worker = worker
        self.log = log
    }

    private var isLithium: Bool {
        if case .lithium = backend { return true }
        return false
    }

    private var network: any TaskNetwork {
        guard case .chain(let network) = backend else { preconditionFailure("a chain stage on the Lithium profile") }
        return network
    }

    /// The decision for one job of a single-job stage.
    private func decide(_ job: Job, _ context: StageContext) throws -> StageOutcome {
        switch job.stage {
        case .create: return try create.decide(job, context)
        case .upload: return try upload.decide(job, context)
        case .poll: return try poll.decide([(job, context)])[0]
        case .fetch: return try fetch.decide(job, context)
        case .validate: throw WorkerError("job \(job.id) is in validate, a stage of the Lithium profile alone")
        }
    }

    private func decide(_ job: Job, _ context: LithiumContext) throws -> StageOutcome {
        switch job.stage {
        case .create: return try lithiumCreate.decide(job, context)
        case .poll: return try lithiumPoll.decide(job, context)
        case .validate: return try lithiumValidate.decide(job, context)
        case .fetch: return try lithiumFetch.decide(job, context)
        case .upload: throw WorkerError("job \(job.id) is in upload, which the Lithium profile has not")
        }
    }

    /// Runs what one claim returned: due polls as one batch, then the rest closest to done first.
    func run(_ db: PostgresConnection, _ jobs: [Job], stopping: () -> Bool) {
        if case .lithium(let relays) = backend {
            // Each Lithium task is its own request: no batch to share, but the claimed jobs'
            // Relay tasks are read in one statement (as fresh as the claimed rows: only the
            // lease holder writes them).
            var read: [Int64: [RelayTaskRecord]]?
            guarding(db, jobs) { read = try JobStore.relayTasks(db, jobIds: jobs.map(\.id)) }
            guard let tasks = read else { return }  // the leases run out, as after any database failure
            for job in jobs.sorted(by: { $0.stage.claimRank > $1.stage.claimRank }) {
                if stopping() { break }
                guarding(db, [job]) { try lithiumStep(db, job, relays, tasks: tasks[job.id] ?? []) }
            }
            return
        }
        let polls = jobs.filter { $0.stage == .poll }
        if !polls.isEmpty { runPolls(db, polls) }
        for job in jobs.filter({ $0.stage != .poll }).sorted(by: { $0.stage.claimRank > $1.stage.claimRank }) {
            if stopping() { break }
            guarding(db, [job]) { try step(db, job) }
        }
    }

    /// The wallet a job pays with: the one that signed its first transaction, else one of ours
    /// by the job's id (spreads new jobs over the wallets; any worker agrees on the choice).
    func wallet(for job: Job) -> Wallet {
        if let address = job.walletAddress, let held = wallets.first(where: { $0.address == address }) { return held }
        return wallets[Int(UInt64(bitPattern: job.id) % UInt64(wallets.count))]
    }

    private func context(_ db: PostgresConnection, _ job: Job, justSigned: StoredTransaction? = nil) -> StageContext {
        let wallet = wallet(for: job)
        return StageContext(network: network, config: config, wallet: wallet, justSigned: justSigned,
                            approvals: { (try JobStore.pendingApproval(db, wallet: wallet.address),
                                          try JobStore.latestApproval(db, wallet: wallet.address)) },
                            admissionCounts: { try JobStore.admissionCounts(db, sinceBlock: $0, sdWeight: $1) },
                            walletTransactions: { try JobStore.sendableTransactions(db, wallet: wallet.address, fromNonce: $0, below: $1) }) { purpose in
            try JobStore.transactions(db, of: job, purpose: purpose)
        }
    }

    /// Decides and applies until the job's outcome is more than "sign this". `first` is a
    /// decision already taken (a batched poll's).
    func step(_ db: PostgresConnection, _ job: Job, first: (StageOutcome, StageContext)? = nil) throws {
        var job = job
        var decided = first
        while true {
            let (outcome, context) = try decided ?? decideOrRetry(job, self.context(db, job, justSigned: nil))
            decided = nil
            guard case .sign(let draft, let facts, let note) = outcome else {
                if context.observed.isEmpty, let next = try continuing(db, outcome, job) {
                    job = next
                    continue
                }
                try applyWithinBudgets(db, outcome, to: job, observed: context.observed)
                return
            }
            let signed: StoredTransaction
            do {
                signed = try JobStore.storeSigned(db, draft, facts: facts, note: note, for: job, worker: worker, observed: context.observed) {
                    try context.wallet.sign(draft, nonce: $0)
                }
            } catch is AdmissionDenied {
                // Other createTasks are on their way to the queue; this one waits its turn.
                try apply(db, .wait(after: config.admissionRetry), to: job, observed: context.observed)
                return
            } catch let committed as TokensCommitted {
                try apply(db, .wait(after: 1, error: committed.description), to: job, observed: context.observed)
                return
            } catch let pending as ReconciliationPending {
                try apply(db, .wait(after: config.admissionRetry, error: pending.description), to: job, observed: context.observed)
                return
            } catch let exceeded as BudgetExceeded {
                try apply(db, budgetWait(exceeded), to: job, observed: context.observed)
                return
            } catch is ApprovalInFlight {
                // Another job's approval will cover this one too.
                try apply(db, .wait(after: 1), to: job, observed: context.observed)
                return
            }
            log.info("job \(job.id) signed \(draft.purpose.rawValue) nonce \(signed.nonce) tx \(signed.hash.hex): \(note)",
                     .init(job: job.id, stage: job.stage.rawValue, task: job.taskId, tx: signed.hash.hex, wallet: context.wallet.address.checksummed))
            // Signing wrote facts under the same lease: continue from the stored row, with the
            // stored transaction to send.
            guard let reloaded = try JobStore.job(db, id: job.id), reloaded.leaseToken == job.leaseToken else { throw LeaseLost() }
            job = reloaded
            decided = try decideOrRetry(job, self.context(db, job, justSigned: signed))
        }
    }

    /// Decides and applies until the job's outcome is more than "store this first" (at most a
    /// few times: prepare a task, send it; prove, validate).
    /// `tasks`: the job's Relay tasks as read with its claim; a prepare reads them back with its write.
    func lithiumStep(_ db: PostgresConnection, _ job: Job, _ relays: [Address: any LithiumRelay], tasks: [RelayTaskRecord]) throws {
        var job = job
        var tasks = tasks
        for _ in 0..<8 {
            let wallet = wallet(for: job)
            guard let relay = relays[wallet.address] else { throw WorkerError("no Relay client for wallet \(wallet.address.checksummed)") }
            let context = LithiumContext(relay: relay, config: config, wallet: wallet, tasks: tasks)
            let outcome = try jobsOwnFailure({ try decide(job, context) }, else: { context.retryLater(job, after: $0) })
            // An advance that goes on leaves the Relay tasks as they were (it changes none).
            if let next = try continuing(db, outcome, job) {
                job = next
                continue
            }
            guard case .prepare = outcome else {
                try applyWithinBudgets(db, outcome, to: job, observed: Observations())
                return
            }
            // Stored first, then sent: the stage goes on from the stored row and tasks.
            let stored: (job: Job, relayTasks: [RelayTaskRecord])?
            do {
                stored = try JobStore.applyPrepare(db, outcome, to: job, worker: worker)
            } catch let exceeded as BudgetExceeded {
                try apply(db, budgetWait(exceeded), to: job, observed: Observations())
                return
            }
            guard let stored else { throw LeaseLost() }
            report(outcome, of: job)
            job = stored.job
            tasks = stored.relayTasks
        }
    }

    /// A network failure (or anything the stage did not expect) makes the job due again later; a
    /// database failure is not the job's and goes up.
    private func decideOrRetry(_ job: Job, _ context: StageContext) throws -> (StageOutcome, StageContext) {
        (try jobsOwnFailure({ try decide(job, context) }, else: { context.retryLater(job, after: $0) }), context)
    }

    private func runPolls(_ db: PostgresConnection, _ jobs: [Job]) {
        guarding(db, jobs) {
            let batch = jobs.map { ($0, context(db, $0)) }
            let outcomes = try jobsOwnFailure({ try poll.decide(batch) }, else: { error in batch.map { $0.1.retryLater($0.0, after: error) } })
            // Tasks still running, the common answer, are written together: one statement.
            var stillRunning: [(job: Job, after: Double)] = []
            for ((job, context), outcome) in zip(batch, outcomes) {
                if case .wait(let after, let facts, nil, false, nil) = outcome, facts == JobFacts(), context.observed.isEmpty {
                    stillRunning.append((job, after))
                } else {
                    guarding(db, [job]) { try step(db, job, first: (outcome, context)) }
                }
            }
            guarding(db, stillRunning.map(\.job)) {
                let written = try JobStore.applyStillWaiting(db, stillRunning)
                for (job, after) in stillRunning where written.contains(job.id) { dueAgain(Date(timeIntervalSinceNow: after)) }
                let lost = stillRunning.filter { !written.contains($0.job.id) }.map { String($0.job.id) }
                if !lost.isEmpty {
                    WorkerMetrics.leasesLost(lost.count)
                    log.info("job(s) \(lost.joined(separator: ",")): lease lost; another worker has taken over", .init(stage: JobStage.poll.rawValue))
                }
            }
        }
    }

    /// A payment a budget holds back: the job waits in its stage, nothing signed or sent, until
    /// the window has room again (looked at again within a minute, as budgets may change); one
    /// that alone is over a budget can never be made and fails.
    private func budgetWait(_ exceeded: BudgetExceeded) -> StageOutcome {
        guard let roomAt = exceeded.roomAt else {
            return .fail(reason: "\(exceeded.description.replacingOccurrences(of: "waiting for budget: ", with: "")); nothing was paid", retryFrom: .create)
        }
        return .wait(after: min(max(roomAt.timeIntervalSinceNow, 1), 60), error: exceeded.description)
    }

    /// An advance to a stage due at once goes on in this thread: written with the lease kept,
    /// and the job back from the same statement, instead of a release and a claim of its own
    /// (one statement instead of two, and no pass of the claim over the due index). nil: apply
    /// the outcome as usual (it is not such an advance, or the process is stopping). Stages only
    /// advance forward, so a job goes on at most once per stage.
    private func continuing(_ db: PostgresConnection, _ outcome: StageOutcome, _ job: Job) throws -> Job? {
        guard case .advance(_, let after, let facts, _) = outcome, after <= 0, !facts.touchesRelayTasks, !isStopping() else { return nil }
        guard let next = try JobStore.advanceKeepingLease(db, outcome, to: job, worker: worker, leaseSeconds: config.leaseSeconds) else {
            throw LeaseLost()
        }
        report(outcome, of: job)
        return next
    }

    /// Applies `outcome`; one whose payment (a Relay task stored before it is sent) a budget holds
    /// back is not applied, and the job waits instead (false).
    @discardableResult
    private func applyWithinBudgets(_ db: PostgresConnection, _ outcome: StageOutcome, to job: Job, observed: Observations) throws -> Bool {
        do {
            try apply(db, outcome, to: job, observed: observed)
            return true
        } catch let exceeded as BudgetExceeded {
            try apply(db, budgetWait(exceeded), to: job, observed: observed)
            return false
        }
    }

    private func apply(_ db: PostgresConnection, _ outcome: StageOutcome, to job: Job, observed: Observations) throws {
        guard try JobStore.apply(db, outcome, to: job, worker: worker, observed: observed) else {
            // Someone else owns the job now; what we saw on chain is still true.
            if !observed.isEmpty { try JobStore.recordObservations(db, observed) }
            throw LeaseLost()
        }
        switch outcome {
        case .advance(_, let after, _, _), .wait(let after, _, _, _, _): dueAgain(Date(timeIntervalSinceNow: after))
        case .recreate, .unsign: dueAgain(Date())
        case .fail, .cancel, .succeed, .sign, .prepare: break
        }
        report(outcome, of: job)
    }

    /// The metrics and the log line of an outcome written for `job`.
    private func report(_ outcome: StageOutcome, of job: Job) {
        let fields = WorkerLog.Fields(job: job.id, stage: job.stage.rawValue, task: job.taskId, tx: job.txHash?.hex)
        observe(outcome, of: job)
        switch outcome {
        case .advance(let stage, _, _, let note): log.info("job \(job.id) \(job.stage.rawValue) -> \(stage.rawValue): \(note)", fields)
        case .fail(let reason, _, _): log.info("job \(job.id) failed in \(job.stage.rawValue): \(reason)", fields)
        case .cancel(let note, _): log.info("job \(job.id) cancelled: \(note)", fields)
        case .succeed(let files, _): log.info("job \(job.id) succeeded: \(files.count) result(s) stored", fields)
        case .recreate(let note, _), .unsign(let note), .prepare(_, let note): log.info("job \(job.id): \(note)", fields)
        case .wait(_, _, let note?, false, nil) where isLithium: log.info("job \(job.id) \(job.stage.rawValue): \(note)", fields)
        case .wait(let after, _, _, true, let error):
            log.info("job \(job.id) \(job.stage.rawValue): \(error ?? "not yet"); retrying in \(String(format: "%.1f", after)) s", fields)
        case .wait(let after, _, let note?, false, let error?) where note.hasPrefix(CreateStage.waitingForFunds):
            log.warning("job \(job.id) \(error); looking again in \(Int(after)) s", fields)
        case .wait, .sign: break
        }
    }

    /// The metrics an applied outcome moves: stage durations, outcomes by kind, fees spent and refunded.
    private func observe(_ outcome: StageOutcome, of job: Job) {
        let inStage = -job.stageEnteredAt.timeIntervalSinceNow
        let profile = job.networkProfile ?? config.profile.rawValue
        // Lithium: what the Relay Account paid and got back, task by task.
        for change in outcome.facts?.relayTaskChanges ?? [] {
            if let fee = change.charged { WorkerMetrics.feeSpent(fee, profile: profile) }
            if let fee = change.refunded { WorkerMetrics.feeRefunded(fee, profile: profile) }
        }
        switch outcome {
        case .advance(let stage, _, let facts, _):
            WorkerMetrics.stageFinished(job.stage, after: inStage)
            // The createTask was mined and named its task: its fee is spent (era D: the value;
            // Hydrogen: what the contract pulled, read from the receipt).
            if job.stage == .create, stage != .create, facts.taskId != nil,
               let fee = facts.tokenFeeWei ?? facts.feeWei ?? job.tokenFeeWei ?? job.feeWei {
                WorkerMetrics.feeSpent(fee, profile: profile)
            }
        case .fail(_, _, let facts), .cancel(_, let facts):
            WorkerMetrics.stageFinished(job.stage, after: inStage)
            if case .cancel = outcome { WorkerMetrics.outcome("cancelled", kind: job.kind) } else { WorkerMetrics.outcome("failed", kind: job.kind) }
            if job.refundReason != nil, facts.abortReason == TaskContract.cancelledReason, let fee = job.tokenFeeWei ?? job.feeWei {
                WorkerMetrics.feeRefunded(fee, profile: profile)
            }
        case .succeed:
            WorkerMetrics.stageFinished(job.stage, after: inStage)
            WorkerMetrics.outcome("succeeded", kind: job.kind)
        case .recreate:
            WorkerMetrics.outcome("recreated", kind: job.kind)
        case .wait(_, _, _, _, let error?) where error.hasPrefix(CreateStage.waitingForFunds):
            WorkerMetrics.waitingForFunds()
        case .wait, .sign, .prepare, .unsign:
            break
        }
    }

    /// Lease losses and database failures end the step for these jobs without touching them:
    /// the lease expires and another try happens; nothing half-written survives a rollback.
    private func guarding(_ db: PostgresConnection, _ jobs: [Job], _ body: () throws -> Void) {
        let ids = jobs.map { String($0.id) }.joined(separator: ",")
        do {
            try body()
        } catch is LeaseLost {
            WorkerMetrics.leasesLost(jobs.count)
            log.info("job(s) \(ids): lease lost; another worker has taken over", .init(job: jobs.count == 1 ? jobs[0].id : nil))
        } catch {
            log.error("job(s) \(ids): \(error)", .init(job: jobs.count == 1 ? jobs[0].id : nil))
        }
    }
}
