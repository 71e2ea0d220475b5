import Ethereum
import Foundation
import JobQueue
import Postgres
import TestSupport
import Testing

/// A worker outlives its database: restarts of PostgreSQL and terminated connections never end
/// the process, and a worker started while the server is down starts once it is back. On a
/// PostgreSQL cluster of its own (the shared one must stay up for the other suites).
@Suite("A worker outlives its database (end to end)", .serialized)
struct DatabaseOutageEndToEndTests {
    @Test func workersRideOutRestartsAndTerminatedConnections() throws {
        try Devnet.fillingTheSharedQueue { try rideOutRestartsAndTerminatedConnections() }
    }

    private func rideOutRestartsAndTerminatedConnections() throws {
        let devnet = try Devnet.shared()
        let cluster = try TestCluster.start()
        defer { cluster.destroy() }
        let key = PrivateKey.random()
        try devnet.fund(key.address.checksummed)
        #expect(try Products.runWorker(["migrate"], environment: ["DATABASE_URL": cluster.url]).status == 0)
        let db = try PostgresConnection(url: cluster.url)
        for i in 0..<50 {
            let args = i % 5 == 4 ? PipelineHarness.gptArgs("outage \(i)") : PipelineHarness.sdArgs(images: 1, prompt: "outage \(i)")
            try JobStore.submit(db, JobSubmission(kind: i % 5 == 4 ? "gpt" : "sd", taskArgs: args))
        }
        func worker(_ name: String) throws -> WorkerProcess {
            try WorkerProcess(arguments: ["--database-url", cluster.url, "--devnet", devnet.file, "--worker-name", name,
                                          "--poll-interval", "0.3", "--poll-interval-max", "2", "--fee-per-result-wei", "1000",
                                          "--lease-seconds", "15", "--keeper-interval", "2"],
                              environment: ["CRYNUX_PRIVATE_KEY": key.hexForTests])
        }
        let workers = try (0..<3).map { try worker("outage-\($0)") }
        for worker in workers { #expect(worker.waitForOutput(containing: "started:", timeout: 60), "\(worker.output)") }

        // The chaos schedule: every worker connection cut every 3 s; one restart after 10 jobs;
        // after 25 the server goes down, a fourth worker starts, and the server comes back.
        func count(_ status: String) -> Int64? {
            try? db.query("SELECT count(*) FROM crynux.jobs WHERE status = $1", [status])[0].get(0, as: Int64.self)
        }
        var late: WorkerProcess?
        var restarts = 0
        var lastCut = Date()
        let deadline = Date().addingTimeInterval(480)
        while Date() < deadline, count("pending") != 0 {
            if Date().timeIntervalSince(lastCut) >= 3 {
                _ = try? cluster.terminateConnections()
                lastCut = Date()
            }
            let succeeded = count("succeeded") ?? 0
            if restarts == 0, succeeded >= 10 {
                try cluster.restart()
                restarts = 1
            } else if restarts == 1, succeeded >= 25 {
                try cluster.stopServer()
                let started = try worker("late")
                late = started
                #expect(started.waitForOutput(containing: "waiting for PostgreSQL", timeout: 60), "\(started.output)")
                try cluster.startServer()
                restarts = 2
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(restarts == 2)
        let unfinished = try db.query("SELECT id::text || ' ' || status || ' ' || coalesce(last_error, '') FROM crynux.jobs WHERE status <> 'succeeded'")
            .map { try $0.get(0, as: String.self) }
        #expect(unfinished.isEmpty, "\(unfinished)")
        // Exactly one paid task per job, and not one transaction more.
        let rpc = EthereumClient(url: devnet.rpcURL)
        let creator = [UInt8](repeating: 0, count: 12) + key.address.bytes
        let pendings = try rpc.getLogs(LogFilter(fromBlock: .earliest, toBlock: .latest, address: Address(hex: devnet.taskContract),
                                                 topics: [[ABI.eventTopic("TaskPending(uint256,uint256,address,bytes32,bytes32)")], [creator]]))
        #expect(pendings.count == 50)
        #expect(try rpc.getTransactionCount(key.address, block: .latest) == 50)

        let all = workers + (late.map { [$0] } ?? [])
        #expect(late?.waitForOutput(containing: "started:", timeout: 60) == true, "\(late?.output ?? "")")
        for worker in all {
            #expect(worker.process.isRunning, "a worker ended by itself:\n\(worker.output.suffix(3000))")
            worker.signal(SIGTERM)
            #expect(worker.wait(timeout: 60) == 0, "\(worker.output.suffix(3000))")
        }
    }

    @Test func migrationsStartedWhileTheServerIsDownWaitThenApplyOnce() throws {
        let cluster = try TestCluster.start()
        defer { cluster.destroy() }
        try cluster.stopServer()
        let results = MigrateResults()
        let group = DispatchGroup()
        for _ in 0..<4 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                results.add((try? Products.runWorker(["migrate", "--startup-timeout", "120"], environment: ["DATABASE_URL": cluster.url]))
                            ?? (-1, "did not run"))
            }
        }
        // All four are up and waiting before the server comes back.
        #expect(Self.waitForMigrations(to: cluster.url, count: 4, timeout: 30))
        try cluster.startServer()
        #expect(group.wait(timeout: .now() + 120) == .success)
        #expect(results.all.count == 4 && results.all.allSatisfy { $0.status == 0 }, "\(results.all.map(\.output))")
        let versions = try PostgresConnection(url: cluster.url).query("SELECT version FROM crynux.schema_migrations ORDER BY version")
        #expect(try versions.map { try $0.get("version", as: Int.self) } == (try Migration.bundled().map(\.version)))
    }

    /// Waits until `count` `crynux-worker migrate` processes for `url` run (read from /proc).
    static func waitForMigrations(to url: String, count: Int, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let found = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).filter { pid in
                guard pid.allSatisfy(\.isNumber), let command = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
                      let environment = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return false }
                let line = String(decoding: command, as: UTF8.self)
                return line.contains("crynux-worker") && line.contains("migrate")
                    && String(decoding: environment, as: UTF8.self).contains("DATABASE_URL=" + url)
            }
            if found.count >= count { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return false
    }
}

final class MigrateResults: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [(status: Int32, output: String)] = []
    func add(_ result: (status: Int32, output: String)) { lock.withLock { results.append(result) } }
    var all: [(status: Int32, output: String)] { lock.withLock { results } }
}
