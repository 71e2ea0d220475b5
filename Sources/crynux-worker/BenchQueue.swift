import ArgumentParser
import Ethereum
import Foundation
import JobQueue
import Worker

/// `crynux-worker bench-queue`: the queue's own throughput, for `scripts/bench queue`.
struct BenchQueue: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-queue",
        abstract: "Benchmark: run N jobs through claim → stage → apply with stages that do nothing (or wait); prints JSON.",
        discussion: "Uses the database's crynux schema; the jobs it adds are ordinary rows. Example:\n  crynux-worker bench-queue --jobs 20000 --concurrency 4")
    @OptionGroup var database: DatabaseOptions
    @Option(help: "Jobs to add and run.") var jobs = 20_000
    @Option(help: "Threads claiming and applying.") var concurrency = 4
    @Option(help: "Jobs claimed per round trip.") var claimBatch = 8
    @Option(help: "Milliseconds each stage waits before it decides (0: a no-op stage).") var stageWaitMs = 0.0

    func run() throws {
        let db = try database.connect()
        try JobStore.submitMany(db, kind: "sd", taskArgs: #"{"base_model":"m","prompt":"benchmark","task_config":{"num_images":1}}"#,
                                count: jobs)
        var config = WorkerConfig(databaseURL: database.url, rpcURL: "", relayURL: "", expectedChainId: nil,
                                  taskContract: Address(bytes: [UInt8](repeating: 0, count: 20)),
                                  taskQueueContract: Address(bytes: [UInt8](repeating: 0, count: 20)), keys: [],
                                  workerName: "bench-queue")
        config.concurrency = concurrency
        config.claimBatch = claimBatch
        let before = ResourceUsage.now()
        let figures = try QueueBenchmark(config: config, stageWait: stageWaitMs / 1000).run()
        let used = ResourceUsage.now()
        let json: [String: Any] = [
            "jobs": figures.jobs, "seconds": figures.seconds, "jobs_per_s": Double(figures.jobs) / figures.seconds,
            "cpu_s": used.cpuSeconds - before.cpuSeconds, "peak_rss_kib": used.peakRSSKiB,
            "claims": figures.claims, "empty_claims": figures.emptyClaims, "statements": figures.statements,
            "concurrency": concurrency, "claim_batch": claimBatch, "stage_wait_ms": stageWaitMs,
        ]
        print(String(decoding: try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]), as: UTF8.self))
    }
}

struct ResourceUsage {
    let cpuSeconds: Double
    let peakRSSKiB: Int

    static func now() -> ResourceUsage {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1_000_000 }
        return ResourceUsage(cpuSeconds: seconds(usage.ru_utime) + seconds(usage.ru_stime), peakRSSKiB: usage.ru_maxrss)
    }
}
