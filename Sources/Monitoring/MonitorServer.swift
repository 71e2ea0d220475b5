import Dispatch
import FlyingFox
import FlyingSocks
import Foundation
import JobQueue
import Metrics
import Postgres
import Prometheus
import Worker

/// The monitoring port: `/metrics` (Prometheus text), `/healthz`, and a read-only dashboard
/// (`/`, `/jobs/ID`, `/jobs/ID/results/N`). FlyingFox serves it on Swift concurrency; every
/// database read runs on one serial queue of its own, with its own connection, so a slow query
/// or a database outage never takes a thread from the stage machine, and never more than one
/// connection from the server.
public final class MonitorServer: @unchecked Sendable {
    public struct Options: Sendable {
        public var address: String
        public var port: UInt16
        /// A block explorer's transaction page, with `{hash}` where the hash goes; nil: hashes are not links.
        public var explorerTxURL: String?
        /// Seconds between two samples of the database gauges.
        public var sampleInterval: Double
        /// What /healthz calls the network when it cannot read it: "chain", or "relay" (Lithium).
        public var networkName: String

        public init(address: String = "127.0.0.1", port: UInt16, explorerTxURL: String? = nil, sampleInterval: Double = 15,
                    networkName: String = "chain") {
            self.networkName = networkName
            self.address = address
            self.port = port
            self.explorerTxURL = explorerTxURL
            self.sampleInterval = sampleInterval
        }
    }

    /// What `/healthz` asks of the node: its chain id now, and the one the worker expects; nil
    /// while the worker has not connected yet.
    /// What the health check reads of the network: the node's chain id (era D, Hydrogen) or the
    /// Relay's clock (Lithium); nil before the worker has connected.
    public enum NetworkReading: Sendable {
        case chain(node: UInt64, expected: UInt64)
        case relay(time: Int64)
    }
    public typealias ChainCheck = @Sendable () throws -> NetworkReading?

    private let options: Options
    private let database: DatabaseLane
    private let chainCheck: ChainCheck
    private let log: WorkerLog
    private let registry: PrometheusCollectorRegistry
    private let finished = FinishedCounts()
    private var server: HTTPServer?
    private var serving: Task<Void, any Error>?
    private var sampler: Thread?
    private let stopped = NSCondition()
    private var isStopped = false

    public init(options: Options, connect: @escaping @Sendable () throws -> PostgresConnection, chainCheck: @escaping ChainCheck,
                log: WorkerLog) {
        self.options = options
        database = DatabaseLane(connect: connect)
        self.chainCheck = chainCheck
        self.log = log
        registry = MetricsBackend.bootstrap()
    }

    /// Starts serving and sampling; returns the port it listens on (useful with port 0).
    public func start() throws -> UInt16 {
        let address: sockaddr_in
        do {
            address = try .inet(ip4: options.address, port: options.port)
        } catch {
            throw WorkerError("--metrics-address \(options.address) is not an IPv4 address")
        }
        var routes = RoutedHTTPHandler()
        let pages = Pages(explorerTxURL: options.explorerTxURL)
        let database = database, registry = registry, chainCheck = chainCheck, finished = finished, networkName = options.networkName
        routes.appendRoute("GET /metrics") { _ in
            served("/metrics")
            return HTTPResponse(statusCode: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                         body: Data(registry.emitToBuffer()))
        }
        routes.appendRoute("GET /healthz") { _ in
            served("/healthz")
            let (healthy, body) = await Health.check(database: database, chain: chainCheck, networkName: networkName)
            return HTTPResponse(statusCode: healthy ? .ok : .serviceUnavailable, headers: [.contentType: "application/json"],
                                body: Data(body.utf8))
        }
        routes.appendRoute("GET /") { _ in
            served("/")
            return await page { try await database.run { db in pages.dashboard(try DashboardData.load(db, finished: { try finished.counts($0) })) } }
        }
        routes.appendRoute("GET /jobs") { request in
            served("/jobs")
            func choice(_ name: String, _ allowed: [String]) -> String? {
                request.query[name].flatMap { allowed.contains($0) ? $0 : nil }
            }
            let filter = Dashboard.JobFilter(status: choice("status", Pages.statuses), kind: choice("kind", Pages.kinds),
                                             profile: choice("profile", Pages.profiles), before: request.query["before"].flatMap { Int64($0) })
            return await page {
                try await database.run { db in pages.jobList(try Dashboard.jobs(db, filter, limit: 51), filter: filter, pageSize: 50) }
            }
        }
        routes.appendRoute("GET /search") { request in
            served("/search")
            let query = String((request.query["q"] ?? "").prefix(200))
            return await page { try await database.run { db in pages.searchResults(try Dashboard.search(db, query), query: query) } }
        }
        routes.appendRoute("GET /jobs/:id") { request in
            served("/jobs/:id")
            guard let id = request.routeParameters.first.flatMap({ Int64($0.value) }) else { return notFound("no such job") }
            return await page {
                try await database.run { db in
                    guard let job = try JobStore.job(db, id: id) else { return nil }
                    return pages.job(job, transactions: try JobStore.allTransactions(db, jobId: id),
                                     events: try JobStore.events(db, jobId: id), results: try Dashboard.results(db, jobId: id))
                }
            }
        }
        routes.appendRoute("GET /jobs/:id/results/:index") { request in
            served("/jobs/:id/results/:index")
            let values = request.routeParameters.map(\.value)
            guard values.count == 2, let id = Int64(values[0]), let index = Int32(values[1]) else { return notFound("no such result") }
            do {
                guard let file = try await database.run({ try Dashboard.result($0, jobId: id, index: index) }) else {
                    return notFound("job \(id) has no result \(index)")
                }
                return HTTPResponse(statusCode: .ok, headers: [.contentType: Pages.safeContentType(file.contentType),
                                                                .cacheControl: "max-age=3600",
                                                                HTTPHeader("X-Content-Type-Options"): "nosniff"],
                                    body: Data(file.data))
            } catch {
                return unavailable(error)
            }
        }
        let server = HTTPServer(address: address, timeout: 30, logger: ServerLog(log: log), handler: routes)
        self.server = server
        let ready = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var startError: (any Error)?
        serving = Task.detached {
            try await server.run()
        }
        Task.detached {
            do { try await server.waitUntilListening(timeout: 10) } catch { startError = error }
            ready.signal()
        }
        ready.wait()
        if let startError { throw WorkerError("the monitoring port \(options.address):\(options.port) did not open: \(startError)") }
        let port = Self.boundPort(server)
        let sampler = Thread { [self] in sample() }
        sampler.name = "monitor-sampler"
        sampler.start()
        self.sampler = sampler
        return port ?? options.port
    }

    public func stop() {
        stopped.lock()
        isStopped = true
        stopped.broadcast()
        stopped.unlock()
        if let server {
            let done = DispatchSemaphore(value: 0)
            Task.detached {
                await server.stop(timeout: 1)
                done.signal()
            }
            _ = done.wait(timeout: .now() + 3)
        }
        serving?.cancel()
    }

    private static func boundPort(_ server: HTTPServer) -> UInt16? {
        let found = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var port: UInt16?
        Task.detached {
            if case .ip4(_, let bound)? = await server.listeningAddress { port = bound }
            found.signal()
        }
        found.wait()
        return port
    }

    /// The database gauges: pending jobs per stage and the oldest due job's age every interval,
    /// finished jobs per status and stage about every fourth (they count the whole finished-job
    /// index, which grows with retention).
    private func sample() {
        var previous: Set<[String]> = []
        while true {
            do {
                try database.runBlocking { db in
                    let counts = try Dashboard.pendingCounts(db) + finished.counts(db, maxAge: options.sampleInterval * 3.5)
                    WorkerMetrics.jobs(counts.map { ($0.status, $0.stage, $0.jobs) }, clearing: &previous)
                    WorkerMetrics.oldestDueJobAge(try Dashboard.oldestDue(db)?.seconds ?? 0)
                }
            } catch {
                log.error("monitor: sampling the database: \(error)")
            }
            stopped.lock()
            let deadline = Date(timeIntervalSinceNow: options.sampleInterval)
            while !isStopped && Date() < deadline { _ = stopped.wait(until: deadline) }
            let done = isStopped
            stopped.unlock()
            if done { return }
        }
    }
}

/// The all-time finished counts, shared by the sampler and the dashboard: read again only when
/// older than asked (the dashboard takes them up to a minute old).
final class FinishedCounts: @unchecked Sendable {
    private let lock = NSLock()
    private var cached: (counts: [Dashboard.Count], at: Date)?

    func counts(_ db: PostgresConnection, maxAge: Double = 60) throws -> [Dashboard.Count] {
        if let cached = lock.withLock({ cached }), -cached.at.timeIntervalSinceNow < maxAge { return cached.counts }
        let counts = try Dashboard.finishedCounts(db)
        lock.withLock { cached = (counts, Date()) }
        return counts
    }
}

/// Requests served per route: `crynux_monitor_requests_total{route}`.
private func served(_ route: String) {
    Counter(label: "crynux_monitor_requests_total", dimensions: [("route", route)]).increment()
}

/// A page from the database; a database that does not answer gives 503 with the reason.
private func page(_ body: () async throws -> String?) async -> HTTPResponse {
    do {
        guard let html = try await body() else { return notFound("no such job") }
        return HTTPResponse(statusCode: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: Data(html.utf8))
    } catch {
        return unavailable(error)
    }
}

private func notFound(_ text: String) -> HTTPResponse {
    HTTPResponse(statusCode: .notFound, headers: [.contentType: "text/plain; charset=utf-8"], body: Data((text + "\n").utf8))
}

private func unavailable(_ error: any Error) -> HTTPResponse {
    HTTPResponse(statusCode: .serviceUnavailable, headers: [.contentType: "text/plain; charset=utf-8"],
                 body: Data("the database does not answer: \(error)\n".utf8))
}

/// The server's own log lines (a client that hung up, a bad request) go to the worker's log at
/// debug level; its errors at error level.
private struct ServerLog: FlyingSocks.Logging {
    let log: WorkerLog
    func logDebug(_ debug: @autoclosure () -> String) {}
    func logInfo(_ info: @autoclosure () -> String) { log.debug("monitor: \(info())") }
    func logWarning(_ warning: @autoclosure () -> String) { log.debug("monitor: \(warning())") }
    func logError(_ error: @autoclosure () -> String) { log.error("monitor: \(error())") }
    func logCritical(_ critical: @autoclosure () -> String) { log.error("monitor: \(critical())") }
}
