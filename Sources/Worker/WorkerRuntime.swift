import Crynux
import Dispatch
import Ethereum
import Foundation
import HTTP
import JobQueue
import Postgres

/// One worker process: one claimer, N threads running the stages it claimed, a listener that
/// wakes the claimer on NOTIFY, and a graceful stop on SIGTERM/SIGINT.
///
/// One claimer per process, not one per thread: idle threads that each claimed and asked when the
/// next job was due turned every due job into a claim and a query per thread (48 claims and 40
/// "next due" queries per job were measured). The claimer claims only for free threads, and
/// sleeps until the earliest due time it knows: the database's, or one a thread just wrote.
public final class WorkerRuntime: @unchecked Sendable {
    public let config: WorkerConfig
    private let log: WorkerLog
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var stopping = false
    private var wakeups = 0
    /// Claimed batches not yet taken by a stage thread, and the threads waiting for one.
    private var ready: [[Job]] = []
    private var freeThreads = 0
    /// When the claimer looks next (earlier when a thread writes an earlier due time).
    private var nextClaim = Date.distantPast
    /// The pace of the last batch, for the claim size (see `claimLimit`).
    private var secondsPerJob = 0.0

    /// The name on this process's leases and history lines: the configured name and a random
    /// suffix, so that two processes given the same name never hand back each other's leases.
    public let leaseHolder: String

    /// The network, once `run` has connected to it (the health check asks it for its chain id).
    public var connectedNetwork: (any TaskNetwork)? { condition.withLock { network } }
    private var network: (any TaskNetwork)?
    /// Lithium: a Relay client, once `run` has reached the Relay (the health check asks it the time).
    public var connectedRelay: LithiumRelayClient? { condition.withLock { lithiumRelay } }
    private var lithiumRelay: LithiumRelayClient?

    public init(config: WorkerConfig, log: WorkerLog) {
        self.config = config
        self.log = log
        leaseHolder = "\(config.workerName)#\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
    }

    /// Runs until stopped (signal, `stop()`, or idle with `exitWhenIdle`). Throws only for
    /// start-up problems: a database that does not answer within `startupTimeout`, an unreachable
    /// node, a wrong chain, a schema this build does not match. Once running, no database error
    /// ends it: every connection is opened again on its next use.
    public func run() throws {
        do {
            try serve()
        } catch where isStopping {
            // A signal while starting (the database or the node not answering yet): the stop
            // asked for is what happens, and it is a clean one.
            log.info("stopped while starting (\(error))")
        }
    }

    private func serve() throws {
        let db = try waitingForDatabase("starting", timeout: config.startupTimeout, log: log, stopping: { isStopping }) {
            let db = try config.connectDatabase()
            let missing = try Migrator.missingVersions(db)
            guard missing.isEmpty else {
                throw WorkerError("the database lacks schema migration(s) \(missing.map(String.init).joined(separator: ", ")) of this build: run `crynux-worker migrate` first")
            }
            return db
        }
        Self.protectSecrets()
        let stages: Pipeline
        let wallets: [Wallet]
        let watch: any FundsWatch
        let keeper: WalletKeeper?
        if config.profile == .lithium {
            // No chain: every task is a signed request to the Relay, paid from the Relay Account.
            wallets = config.keys.map { Wallet(key: $0, chainId: 0) }
            let http = HTTPClient(options: HTTPOptions(connectTimeout: 5, totalTimeout: 60, caFile: config.caFile))
            // One connection pool and one request rate for the process, whatever the number of wallets.
            let pacer = RequestPacer(requestsPerSecond: config.relayRequestRate)
            var relays: [Address: LithiumRelayClient] = [:]
            for wallet in wallets {
                relays[wallet.address] = LithiumRelayClient(baseURL: config.relayURL, key: wallet.key, http: http, pacer: pacer)
            }
            let time = try retryingTransient("asking the Relay at \(redactedURL(config.relayURL)) for its time") {
                try relays[wallets[0].address]!.serverTime()
            }
            condition.withLock { self.lithiumRelay = relays[wallets[0].address] }
            log.info("started: wallet(s) \(wallets.map(\.address.checksummed).joined(separator: ", ")), Lithium Relay \(redactedURL(config.relayURL)) (its clock \(time - Int64(Date().timeIntervalSince1970)) s from ours), \(config.concurrency) threads")
            var pipeline = Pipeline(relays: relays, wallets: wallets, config: config, worker: leaseHolder, log: log)
            pipeline.dueAgain = { [self] due in claimNoLaterThan(due) }
            pipeline.isStopping = { [self] in isStopping }
            stages = pipeline
            watch = RelayAccountWatch(relays: relays, config: config, log: log)
            keeper = nil
        } else {
            // A node that is briefly unreachable or failing at start is waited for; a wrong chain is not.
            let network = try retryingTransient("connecting to \(redactedURL(config.rpcURL))") { try connectNetwork() }
            if let expected = config.expectedChainId, expected != network.chainId {
                throw WorkerError("the node at \(redactedURL(config.rpcURL)) serves chain \(network.chainId), not the configured chain \(expected)")
            }
            condition.withLock { self.network = network }
            wallets = config.keys.map { Wallet(key: $0, chainId: network.chainId) }
            for wallet in wallets {
                try waitingForDatabase("preparing wallet \(wallet.address.checksummed)", timeout: config.startupTimeout, log: log,
                                       stopping: { isStopping }) { try prepare(wallet, db, network) }
            }
            // The other wallets of the chain too, before the first claim: a worker holding only
            // wallet B must not pay for a job whose lost task wallet A paid while A's owner is down.
            try waitingForDatabase("comparing every wallet with the chain", timeout: config.startupTimeout, log: log,
                                   stopping: { isStopping }) {
                try retryingTransient("comparing every wallet with the chain") {
                    try Reconciliation(network: network, config: config, log: log)
                        .pass(db, chainId: network.chainId, ours: wallets.map(\.address))
                }
            }
            log.info("started: wallet(s) \(wallets.map(\.address.checksummed).joined(separator: ", ")), chain \(network.chainId), \(config.concurrency) threads, \(PostgresConnection.statementsSent) database statements sent")
            if config.profile == .hydrogen, config.nodeContract == nil {
                log.warning("no --node-contract: createTasks are not admitted against the free nodes, and one that finds too few by its block reverts and costs its gas")
            }
            var pipeline = Pipeline(network: network, wallets: wallets, config: config, worker: leaseHolder, log: log)
            pipeline.dueAgain = { [self] due in claimNoLaterThan(due) }
            pipeline.isStopping = { [self] in isStopping }
            stages = pipeline
            watch = WalletWatch(network: network, config: config, log: log)
            keeper = WalletKeeper(network: network, config: config, log: log)
        }
        if !config.budgets.isEmpty {
            let budgets = config.budgets.flatMap { spec in
                spec.total ? [Budget(wallet: nil, window: spec.window, limit: spec.limit)]
                    : wallets.map { Budget(wallet: $0.address, window: spec.window, limit: spec.limit) }
            }
            try waitingForDatabase("setting the budgets", timeout: config.startupTimeout, log: log, stopping: { isStopping }) {
                try JobStore.setBudgets(db, budgets)
            }
            log.info("budgets set: \(budgets.map(\.description).joined(separator: "; "))")
        }
        if let ceiling = config.maxFeePerJobWei { log.info("a job may pay at most \(cnx(ceiling)) for its task (--max-fee-per-job)") }

        let done = DispatchGroup()
        for index in 0..<max(config.concurrency, 1) {
            done.enter()
            let thread = Thread { [self] in
                stageLoop(stages, index: index)
                done.leave()
            }
            thread.name = "stage-\(index)"
            thread.start()
        }
        done.enter()
        let claimer = Thread { [self] in
            claimLoop(wallets: wallets.map(\.address))
            done.leave()
        }
        claimer.name = "claimer"
        claimer.start()
        let keeperThread = Thread { [self] in keepWallets(keeper, watch, wallets) }
        keeperThread.name = "wallet-keeper"
        keeperThread.start()

        var listening = false
        var lastIdleCheck = Date.distantPast
        while !isStopping {
            do {
                // Once LISTEN went through, the connection issues it again after every reconnect.
                if !listening {
                    try db.listen(JobStore.notifyChannel)
                    listening = true
                }
                if try db.waitForNotification(timeout: 0.5) != nil { wakeAll() }
                if config.exitWhenIdle, -lastIdleCheck.timeIntervalSinceNow >= 1 {
                    lastIdleCheck = Date()
                    if try JobStore.pendingCount(db) == 0 {
                        log.info("no pending jobs left; stopping")
                        stop()
                    }
                }
            } catch {
                log.error("listener: \(error)")
                idle(upTo: 1, ignoringWakeups: true)
            }
        }

        if done.wait(timeout: .now() + config.shutdownGrace) == .timedOut {
            log.info("stages still running after \(Int(config.shutdownGrace)) s; releasing their leases")
        }
        // The leases are handed back when the database answers; else they expire and another
        // worker takes the jobs. Either way the stop is clean.
        var released = 0
        do {
            released = try JobStore.releaseAll(db, worker: leaseHolder)
        } catch {
            log.error("could not hand back the leases (they expire within \(Int(config.leaseSeconds)) s): \(error)")
        }
        log.info("stopped (\(released) lease(s) handed back, \(PostgresConnection.statementsSent) database statements sent)")
    }

    /// Before a wallet signs anything: if the chain knows transactions of it that the database
    /// does not (its records were lost), wait for them to settle and give the tasks they created
    /// back to their jobs; then the wallet row never hands out a nonce the chain has seen.
    /// The network of the configured profile.
    private func connectNetwork() throws -> any TaskNetwork {
        switch config.profile {
        case .eraD:
            guard let queue = config.taskQueueContract else { throw WorkerError("era D needs the TaskQueue contract's address") }
            return try EraDNetwork.connect(rpcURL: config.rpcURL, relayURL: config.relayURL, taskContract: config.taskContract,
                                           taskQueueContract: queue, keys: config.keys, caFile: config.caFile,
                                           sdSchema: config.sdSchema, logsBlockRange: config.logsBlockRange)
        case .lithium:
            throw WorkerError("the Lithium profile has no chain to connect to")
        case .hydrogen:
            guard let token = config.tokenContract else { throw WorkerError("the Hydrogen network needs the CNX token contract's address") }
            return try HydrogenNetwork.connect(rpcURL: config.rpcURL, relayURL: config.relayURL, taskContract: config.taskContract,
                                               tokenContract: token, nodeContract: config.nodeContract, keys: config.keys, caFile: config.caFile,
                                               sdSchema: config.sdSchema, logsBlockRange: config.logsBlockRange)
        }
    }

    private func prepare(_ wallet: Wallet, _ db: PostgresConnection, _ network: any TaskNetwork) throws {
        // One wallet row, one nonce sequence: the same key on two chains in one database would
        // hand out one chain's nonces on the other.
        if let chain = try JobStore.walletChain(db, wallet: wallet.address), chain != wallet.chainId {
            throw WorkerError("wallet \(wallet.address.checksummed) signs for chain \(chain) in this database, not chain \(wallet.chainId): use another key for this network")
        }
        // Lost records (the wallet row too) are marked before any claim, whoever holds the keeper's
        // lock; until they are mended no worker signs anything new. The chain is read first: every
        // nonce is reserved in the database before it is sent.
        let pending = try retryingTransient("reading the wallet's nonce") { try network.pendingNonce(of: wallet.address) }
        let known = try JobStore.nextNonce(db, wallet: wallet.address)
        if pending > (known ?? 0) {
            log.warning("wallet \(wallet.address.checksummed): the chain has used nonces up to \(pending), the database knows \(known.map { "only up to \($0)" } ?? "no wallet row"); looking for tasks whose records were lost before signing anything")
            try JobStore.requestReconciliation(db, wallet.address, chainId: wallet.chainId, fromNonce: known ?? 0)
        }
        try retryingTransient("reconciling the wallet with the chain") {
            try Reconciliation(network: network, config: config, log: log).reconcile(db, wallet.address, chainId: wallet.chainId)
        }
        try JobStore.reconcileWallet(db, wallet.address, chainId: wallet.chainId, pendingNonce: pending)
    }

    /// The wallet keeper's loop: one pass per wallet every `keeperInterval`, until stopped; the
    /// wallet watch every `walletCheckInterval` (first at start); and the periodic prune, when
    /// configured, every `pruneInterval`.
    private func keepWallets(_ keeper: WalletKeeper?, _ watch: any FundsWatch, _ wallets: [Wallet]) {
        var connection: PostgresConnection?
        var lastPrune = Date()
        var lastCheck = Date.distantPast
        var budgetWatch = BudgetWatch()
        while !isStopping {
            if -lastCheck.timeIntervalSinceNow >= config.walletCheckInterval {
                lastCheck = Date()
                watch.check(wallets)
            }
            idle(upTo: min(config.keeperInterval, config.pruneInterval, config.walletCheckInterval), ignoringWakeups: true)
            if isStopping { break }
            if config.pruneSucceededAfter != nil || config.pruneFailedAfter != nil, -lastPrune.timeIntervalSinceNow >= config.pruneInterval {
                lastPrune = Date()
                do {
                    let db = try connection ?? config.connectDatabase()
                    connection = db
                    let counts = try JobStore.prune(db, succeededBefore: config.pruneSucceededAfter.map { Date(timeIntervalSinceNow: -$0) },
                                                    failedBefore: config.pruneFailedAfter.map { Date(timeIntervalSinceNow: -$0) },
                                                    keepHistory: false)
                    if counts.jobs > 0 { log.info("pruned \(counts.jobs) finished job(s) past their retention") }
                } catch {
                    log.error("prune: \(error)")
                }
            }
            do {
                let db = try connection ?? config.connectDatabase()
                connection = db
                budgetWatch.look(try JobStore.budgetUse(db), log: log)
            } catch {
                log.error("reading the budgets: \(error)")
            }
            if let keeper, let chainId = wallets.first?.chainId {
                do {
                    let db = try connection ?? config.connectDatabase()
                    connection = db
                    try Reconciliation(network: keeper.network, config: config, log: log).pass(db, chainId: chainId, ours: wallets.map(\.address))
                } catch {
                    log.error("reconciling wallets with the chain: \(error)")
                }
            }
            for wallet in wallets {
                guard let keeper else { break }
                do {
                    let db = try connection ?? config.connectDatabase()
                    connection = db
                    try keeper.pass(db, wallet)
                } catch {
                    log.error("wallet keeper \(wallet.address.checksummed): \(error)")
                }
            }
        }
    }

    private func retryingTransient<T>(_ what: String, attempts: Int = 15, _ body: () throws -> T) throws -> T {
        var attempt = 1
        while true {
            do {
                return try body()
            } catch where (error is EthereumClientError || error is RelayError) && attempt < attempts && !isStopping {
                log.info("\(what) failed (\(error)); retrying in 2 s")
                attempt += 1
                Thread.sleep(forTimeInterval: 2)
            }
        }
    }

    /// A core dump would hold the keys: none is written.
    static func protectSecrets() {
        var none = rlimit(rlim_cur: 0, rlim_max: 0)
        _ = setrlimit(Int32(RLIMIT_CORE.rawValue), &none)
    }

    public func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    /// First SIGTERM/SIGINT: stop claiming and finish or release what is in flight. A second
    /// one exits at once; the leases then simply expire.
    public func installSignalHandlers() -> [DispatchSourceSignal] {
        [SIGTERM, SIGINT].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [self] in
                if isStopping {
                    log.info("second signal: exiting now")
                    exit(130)
                }
                log.info("signal \(number): finishing stages in flight (up to \(Int(config.shutdownGrace)) s)")
                stop()
            }
            source.resume()
            return source
        }
    }

    private var isStopping: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopping
    }

    private func wakeAll() {
        condition.lock()
        wakeups += 1
        nextClaim = Date.distantPast
        condition.broadcast()
        condition.unlock()
    }

    /// Sleeps until woken by a NOTIFY (unless ignored), a stop, or `seconds` pass.
    private func idle(upTo seconds: Double, ignoringWakeups: Bool = false) {
        condition.lock()
        let seen = wakeups
        let deadline = Date().addingTimeInterval(seconds)
        while !stopping && (ignoringWakeups || wakeups == seen) && condition.wait(until: deadline) {}
        condition.unlock()
    }

    /// How many jobs the next claim may take. A claim's jobs run one after another, and their
    /// leases run out meanwhile: when a slow node makes each job take long, a full batch would
    /// expire before its last jobs ran, another worker would claim them, and so on (seen in a
    /// chaos run: 10 s leases, 8 creates at 2 s each). So claim no more than a third of a lease's
    /// worth at the last measured pace.
    static func claimLimit(batch: Int, lease: Double, secondsPerJob: Double) -> Int {
        guard secondsPerJob > 0 else { return batch }
        let fits = (lease / 3 / secondsPerJob).rounded(.down)
        return max(1, min(batch, fits >= Double(batch) ? batch : Int(fits)))
    }

    /// Claims for the free stage threads, then sleeps until the next due time, a NOTIFY, a
    /// thread's report of an earlier due time, or a thread coming free with work still due.
    private func claimLoop(wallets: [Address]) {
        var connection: PostgresConnection?
        while true {
            condition.lock()
            while !stopping && (freeThreads == 0 || !ready.isEmpty || Date() < nextClaim) {
                // (wait(until: .distantFuture) traps in Foundation on Linux: its time does not fit.)
                if freeThreads == 0 || !ready.isEmpty || nextClaim == .distantFuture {
                    condition.wait()
                } else {
                    _ = condition.wait(until: nextClaim)
                }
            }
            let free = freeThreads
            let perThread = Self.claimLimit(batch: config.claimBatch, lease: config.leaseSeconds, secondsPerJob: secondsPerJob)
            nextClaim = .distantFuture
            let stop = stopping
            condition.unlock()
            if stop { return }
            do {
                let db = try connection ?? config.connectDatabase()
                connection = db
                let limit = free * perThread
                let (jobs, nextDueIn, expired) = try JobStore.claimNoting(db, worker: leaseHolder, wallets: wallets,
                                                                          profile: config.profile.rawValue, limit: limit,
                                                                          pollLimit: config.pollBatch,
                                                                          leaseSeconds: config.leaseSeconds)
                WorkerMetrics.claimed(batch: jobs.count, expiredLeases: expired)
                if expired > 0 { log.info("took over \(expired) job(s) whose lease had run out") }
                // Polls together (one request for all), the rest shared out evenly over the free threads.
                // (Lithium polls are a request each: shared out like the rest.)
                let batched = config.profile != .lithium
                let polls = jobs.filter { batched && $0.stage == .poll }, others = jobs.filter { !batched || $0.stage != .poll }
                // A full claim: more may be due at once. Otherwise the claim named the next due time.
                let due = others.count >= limit || polls.count >= config.pollBatch ? Date() : Date(timeIntervalSinceNow: min(max(
                    nextDueIn ?? config.idleInterval, 0.02), config.idleInterval))
                condition.lock()
                nextClaim = min(nextClaim, due)
                if !polls.isEmpty { ready.append(polls) }
                let share = max(1, (others.count + free - 1) / free)
                for start in stride(from: 0, to: others.count, by: share) {
                    ready.append(Array(others[start..<min(start + share, others.count)]))
                }
                condition.broadcast()
                condition.unlock()
            } catch {
                log.error("claimer: \(error)")
                claimNoLaterThan(Date(timeIntervalSinceNow: 1))
            }
        }
    }

    /// Runs the batches the claimer hands out until stopped. Batches left when stopping are
    /// still leased by this process; `releaseAll` hands them back.
    private func stageLoop(_ pipeline: Pipeline, index: Int) {
        var connection: PostgresConnection?
        while true {
            condition.lock()
            freeThreads += 1
            condition.broadcast()
            while !stopping && ready.isEmpty { condition.wait() }
            freeThreads -= 1
            guard !stopping, !ready.isEmpty else { condition.unlock(); return }
            let jobs = ready.removeFirst()
            condition.unlock()
            do {
                let db = try connection ?? config.connectDatabase()
                connection = db
                let started = Date()
                pipeline.run(db, jobs, stopping: { isStopping })
                // The pace sizes claims of single-job stages; a batch of polls says nothing of it.
                if jobs.first?.stage != .poll {
                    condition.lock()
                    secondsPerJob = -started.timeIntervalSinceNow / Double(jobs.count)
                    condition.unlock()
                }
            } catch {
                // No connection: the jobs' leases expire and they are claimed again.
                log.error("thread \(index): \(error)")
                idle(upTo: 1, ignoringWakeups: true)
            }
        }
    }

    private func claimNoLaterThan(_ due: Date) {
        condition.lock()
        if due < nextClaim {
            nextClaim = due
            condition.broadcast()
        }
        condition.unlock()
    }
}
