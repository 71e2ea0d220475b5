import Foundation
import HTTP

/// The local Crynux network (scripts/devnet): its description file and admin API.
public struct Devnet: Sendable {
    public struct Account: Sendable { public let address: String; public let privateKey: String }

    public let file: String
    public let rpcURL: String
    public let relayURL: String
    public let adminURL: String
    public let chainId: UInt64
    /// "" on the Lithium profile, which has no task contract (devnet.json: null).
    public let taskContract: String
    /// Era D's TaskQueue; nil on the Hydrogen profile, which has none.
    public let taskQueueContract: String?
    /// The CNX token of the Hydrogen profile; nil in era D.
    public let tokenContract: String?
    /// Where the Hydrogen profile serves Node.sol's views; nil elsewhere.
    public let nodeContract: String?
    /// `era-d`, `hydrogen` or `lithium`.
    public let profile: String
    /// Lithium: where a CNX transfer credits the sender's Relay Account; nil otherwise.
    public let depositAddress: String?
    public let accounts: [Account]
    /// Set when this test process started the network itself (and must stop it).
    let ownStateDir: String?

    static let http = HTTPClient(options: HTTPOptions(connectTimeout: 5, totalTimeout: 60))

    public static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// The shared era-D network's TaskQueue is one resource, as on the real network: two tests
    /// that each keep it near full (each with its own database, so neither counts the other's
    /// createTasks on their way) evict each other's tasks. Such tests fill it one at a time.
    public static func fillingTheSharedQueue<T>(_ body: () throws -> T) rethrows -> T {
        sharedQueue.lock()
        defer { sharedQueue.unlock() }
        return try body()
    }

    private static let sharedQueue = NSLock()

    /// The network scripts/test started (CRYNUX_DEVNET_FILE); fails loudly when there is none.
    public static func shared() throws -> Devnet {
        guard let file = ProcessInfo.processInfo.environment["CRYNUX_DEVNET_FILE"], !file.isEmpty else {
            throw TestSetupError("CRYNUX_DEVNET_FILE is not set: run the tests with scripts/test, which starts the local network")
        }
        return try load(file: file, ownStateDir: nil)
    }

    /// The Hydrogen network scripts/test started (CRYNUX_HYDROGEN_DEVNET_FILE) for the Hydrogen
    /// end-to-end suite, which runs its tests one at a time and restores every knob it turns.
    public static func sharedHydrogen() throws -> Devnet {
        guard let file = ProcessInfo.processInfo.environment["CRYNUX_HYDROGEN_DEVNET_FILE"], !file.isEmpty else {
            throw TestSetupError("CRYNUX_HYDROGEN_DEVNET_FILE is not set: run the tests with scripts/test, which starts the local Hydrogen network")
        }
        let devnet = try load(file: file, ownStateDir: nil)
        guard devnet.profile == "hydrogen" else { throw TestSetupError("\(file) describes a \(devnet.profile) network, not hydrogen") }
        return devnet
    }

    /// The Lithium network scripts/test started (CRYNUX_LITHIUM_DEVNET_FILE): the live network's Relay.
    public static func sharedLithium() throws -> Devnet {
        guard let file = ProcessInfo.processInfo.environment["CRYNUX_LITHIUM_DEVNET_FILE"], !file.isEmpty else {
            throw TestSetupError("CRYNUX_LITHIUM_DEVNET_FILE is not set: run the tests with scripts/test, which starts the local Lithium network")
        }
        let devnet = try load(file: file, ownStateDir: nil)
        guard devnet.profile == "lithium" else { throw TestSetupError("\(file) describes a \(devnet.profile) network, not lithium") }
        return devnet
    }

    /// Starts a network of its own (for tests that turn global fault knobs), with start-up flags.
    public static func startPrivate(_ flags: [String] = []) throws -> Devnet {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("devnet-\(UInt32.random(in: 0...UInt32.max))").path
        let script = repositoryRoot.appendingPathComponent("scripts/devnet").path
        let (status, output) = try runProcess(script, ["up"] + flags, environment: ["DEVNET_DIR": dir])
        guard status == 0 else { throw TestSetupError("scripts/devnet up failed (\(status)): \(output)") }
        return try load(file: dir + "/devnet.json", ownStateDir: dir)
    }

    public func stop() {
        guard let dir = ownStateDir else { return }
        _ = try? Devnet.runProcess(Devnet.repositoryRoot.appendingPathComponent("scripts/devnet").path, ["down"], environment: ["DEVNET_DIR": dir])
    }

    static func load(file: String, ownStateDir: String?) throws -> Devnet {
        guard let data = FileManager.default.contents(atPath: file),
              let json = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TestSetupError("cannot read the devnet description \(file)")
        }
        func string(_ key: String) throws -> String {
            guard let value = json[key] as? String else { throw TestSetupError("devnet.json lacks \(key)") }
            return value
        }
        let accounts = (json["accounts"] as? [[String: Any]] ?? []).compactMap { entry -> Account? in
            guard let address = entry["address"] as? String, let key = entry["private_key"] as? String else { return nil }
            return Account(address: address, privateKey: key)
        }
        let profile = json["profile"] as? String ?? "era-d"
        // Lithium tasks never touch the chain: its task_contract is null.
        let taskContract = profile == "lithium" && json["task_contract"] is NSNull ? "" : try string("task_contract")
        return Devnet(file: file, rpcURL: try string("rpc_url"), relayURL: try string("relay_url"), adminURL: try string("admin_url"),
                      chainId: (json["chain_id"] as? NSNumber)?.uint64Value ?? 0, taskContract: taskContract,
                      taskQueueContract: json["task_queue_contract"] as? String, tokenContract: json["token_contract"] as? String,
                      nodeContract: json["node_contract"] as? String, profile: profile, depositAddress: json["deposit_address"] as? String, accounts: accounts,
                      ownStateDir: ownStateDir)
    }

    // MARK: Admin API

    @discardableResult
    public func admin(_ method: String, _ path: String, _ body: [String: Any]? = nil) throws -> Any {
        let payload = try body.map { try JSONSerialization.data(withJSONObject: $0) }.map { Array($0) }
        let response = try Devnet.http.request(method, adminURL + path, headers: ["Content-Type": "application/json"], body: payload)
        guard response.status == 200 else {
            throw TestSetupError("devnet admin \(method) \(path) answered \(response.status): \(String(decoding: response.body, as: UTF8.self))")
        }
        return try JSONSerialization.jsonObject(with: Data(response.body), options: [.fragmentsAllowed])
    }

    public func configure(_ knobs: [String: Any]) throws { try admin("POST", "/admin/config", knobs) }

    public func fund(_ address: String, wei: String = "1000000000000000000000000") throws {
        try admin("POST", "/admin/fund", ["address": address, "wei": wei])
    }

    /// sha256 (hex) of each file the simulated nodes uploaded for `taskId`, by index.
    public func uploadedDigests(taskId: UInt64) throws -> [Int: String] {
        let json = try admin("GET", "/admin/results/\(taskId)") as? [String: Any]
        var digests: [Int: String] = [:]
        for file in json?["files"] as? [[String: Any]] ?? [] {
            if let index = (file["index"] as? NSNumber)?.intValue, let digest = file["sha256"] as? String { digests[index] = digest.lowercased() }
        }
        return digests
    }

    // MARK: Processes

    /// Runs a command to completion with posix_spawn/waitpid, output through a file. Foundation's
    /// Process was unreliable here: `scripts/devnet up` leaves a daemon behind, a pipe then never
    /// reaches end-of-file, and waitUntilExit/isRunning sometimes never saw the exit.
    public static func runProcess(_ path: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (Int32, String) {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("process-\(UInt32.random(in: 0...UInt32.max)).out").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let env = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { "\($0)=\($1)" }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup($0) } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, nil, argv, envp)
        guard spawned == 0 else { throw TestSetupError("cannot start \(path): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (code, (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
    }
}

/// A `crynux-worker run` process with its output in a log file.
public final class WorkerProcess: @unchecked Sendable {
    public let process = Process()
    public let logFile: URL

    /// Runs `crynux-worker <command> <arguments>` (`run` unless told).
    public init(arguments: [String], environment: [String: String], command: String = "run") throws {
        logFile = FileManager.default.temporaryDirectory.appendingPathComponent("worker-\(UInt32.random(in: 0...UInt32.max)).log")
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        process.executableURL = try Products.worker()
        process.arguments = [command] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let handle = try FileHandle(forWritingTo: logFile)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    public var output: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    /// Waits for the process to exit; kills it and returns nil if it has not within `timeout`.
    public func wait(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        return process.terminationStatus
    }

    /// Signals the process while it runs; never after it ended, when its pid may belong to
    /// another process by now (a chaos run's worker was stopped that way once).
    public func signal(_ number: Int32) {
        guard process.isRunning else { return }
        kill(process.processIdentifier, number)
    }

    /// Waits until the log has a line containing `text`; false when the process exits or `timeout` passes first.
    public func waitForOutput(containing text: String, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if output.contains(text) { return true }
            if !process.isRunning { return output.contains(text) }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return false
    }
}

/// The project's shared folder (protocol reference, real ABIs): beside the repository, as in CI.
public enum SharedFolder {
    public static func path(_ relative: String, file: String = #filePath) throws -> String {
        var root = URL(fileURLWithPath: file)
        while root.path != "/" && !FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path) {
            root.deleteLastPathComponent()
        }
        let path = root.deletingLastPathComponent().appendingPathComponent("shared").appendingPathComponent(relative).path
        guard FileManager.default.fileExists(atPath: path) else {
            throw TestSetupError("\(path) is missing: the shared folder must sit beside the repository")
        }
        return path
    }
}

/// The local Lithium network is shared by two suites that run in parallel in one test process:
/// tests that turn a knob for everyone (a Relay fault that cannot be scoped to one creator) hold
/// this exclusively; the other suite's tests hold it shared.
public enum SharedNetworkKnobs {
    nonisolated(unsafe) private static var lock: pthread_rwlock_t = {
        var lock = pthread_rwlock_t()
        pthread_rwlock_init(&lock, nil)
        return lock
    }()

    public static func exclusively<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_wrlock(&lock)
        defer { pthread_rwlock_unlock(&lock) }
        return try body()
    }

    public static func shared<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_rdlock(&lock)
        defer { pthread_rwlock_unlock(&lock) }
        return try body()
    }
}
