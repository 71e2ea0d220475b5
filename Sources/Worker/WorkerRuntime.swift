import Crynux
import Dispatch
import Ethereum
import Foundation
import JobQueue
import Postgres

/// One worker process: N threads claiming and running stages, a listener that wakes them on
/// NOTIFY, and a graceful stop on SIGTERM/SIGINT.
public final class WorkerRuntime: @unchecked Sendable {
    public let config: WorkerConfig
    private let log: WorkerLog
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var stopping = false
    private var wakeups = 0
    private var running = 0

    public init(config: WorkerConfig, log: WorkerLog) {
        self.config = config
        self.log = log
    }

    /// Runs until stopped (signal, `stop()`, or idle with `exitWhenIdle`). Throws only for
    /// start-up problems: unreachable database or node, wrong chain, missing schema.
    public func run() throws {
        let db = try PostgresConnection(url: config.databaseURL)
        guard try !Migrator.appliedVersions(db).isEmpty else {
            throw WorkerError("the database has no crynux schema: run `crynux-worker migrate` first")
        }
        // A node that is briefly unreachable or failing at start is waited for; a wrong chain is not.
        let network = try retryingTransient("connecting to \(config.rpcURL)") {
            try EraDNetwork.connect(rpcURL: config.rpcURL, relayURL: config.relayURL, taskContract: config.taskContract,
                                    taskQueueContract: config.taskQueueContract, key: config.key)
        }
        if let expected = config.expectedChainId, expected != network.chainId {
            throw WorkerError("the node at \(config.rpcURL) serves chain \(network.chainId), not the configured chain \(expected)")
        }
        let wallet = Wallet(key: config.key, chainId: network.chainId)
        let pending = try retryingTransient("reading the wallet's nonce") { try network.pendingNonce(of: wallet.address) }
        try JobStore.reconcileWallet(db, wallet.address, chainId: wallet.chainId, pendingNonce: pending)
        log.info("started: wallet \(wallet.address.checksummed), chain \(network.chainId), \(config.concurrency) threads")
        let pipeline = Pipeline(network: network, wallet: wallet, config: config, worker: config.workerName, log: log)

        let done = DispatchGroup()
        for index in 0..<max(config.concurrency, 1) {
            done.enter()
            let thread = Thread { [self] in
                runLoop(pipeline, index: index)
                done.leave()
            }
            thread.name = "stage-\(index)"
            thread.start()
        }

        try db.listen(JobStore.notifyChannel)
        var lastIdleCheck = Date.distantPast
        while !isStopping {
            do {
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
                Thread.sleep(forTimeInterval: 1)
            }
        }

        if done.wait(timeout: .now() + config.shutdownGrace) == .timedOut {
            log.info("stages still running after \(Int(config.shutdownGrace)) s; releasing their leases")
        }
        let released = try JobStore.releaseAll(db, worker: config.workerName)
        log.info("stopped (\(released) lease(s) handed back)")
    }

    private func retryingTransient<T>(_ what: String, attempts: Int = 15, _ body: () throws -> T) throws -> T {
        var attempt = 1
        while true {
            do {
                return try body()
            } catch let error as EthereumClientError where attempt < attempts && !isStopping {
                log.info("\(what) failed (\(error)); retrying in 2 s")
                attempt += 1
                Thread.sleep(forTimeInterval: 2)
            }
        }
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
        condition.broadcast()
        condition.unlock()
    }

    /// Sleeps until woken by a NOTIFY, a stop, or `seconds` pass.
    private func idle(upTo seconds: Double) {
        condition.lock()
        let seen = wakeups
        let deadline = Date().addingTimeInterval(seconds)
        while !stopping && wakeups == seen && condition.wait(until: deadline) {}
        condition.unlock()
    }

    private func runLoop(_ pipeline: Pipeline, index: Int) {
        var connection: PostgresConnection?
        while !isStopping {
            do {
                let db = try connection ?? PostgresConnection(url: config.databaseURL)
                connection = db
                let jobs = try JobStore.claim(db, worker: config.workerName, limit: config.claimBatch, leaseSeconds: config.leaseSeconds)
                if jobs.isEmpty {
                    // Sleep until the next job is due (a poll in 0.5 s should not wait for the idle interval).
                    let nextDue = try JobStore.secondsUntilNextDue(db)
                    idle(upTo: min(max(nextDue ?? config.idleInterval, 0.02), config.idleInterval))
                    continue
                }
                pipeline.run(db, jobs, stopping: { isStopping })
            } catch {
                log.error("thread \(index): \(error)")
                Thread.sleep(forTimeInterval: 1)
            }
        }
    }
}
