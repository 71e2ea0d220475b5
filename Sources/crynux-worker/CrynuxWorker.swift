import ArgumentParser
import Crynux
import Ethereum
import Foundation
import JobQueue
import Postgres
import Worker

@main
struct CrynuxWorker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crynux-worker",
        abstract: "Turns rows of crynux.jobs into paid Crynux tasks and stores their results.",
        discussion: """
            Exit codes: 0 done; 1 failed (the database or the network did not answer, a start-up
            check failed, e.g. a wrong chain or a missing migration); 3 no such job (show, cancel,
            retry, wait); 4, 5, 6 (wait) a job failed, was cancelled, or the timeout passed; 64 a usage error (an unknown option, a value out of range). `run` exits 0 after
            a graceful stop (SIGTERM or SIGINT, or --exit-when-idle). Examples:
              crynux-worker migrate
              crynux-worker run --devnet devnet.json --metrics-port 9464
              crynux-worker status
            """,
        subcommands: [Migrate.self, Run.self, Submit.self, Wait.self, Status.self, Show.self, Cancel.self, Retry.self, Results.self, Prune.self,
                      BenchQueue.self])
}

/// Options every command that talks to PostgreSQL takes.
struct DatabaseOptions: ParsableArguments {
    @Option(name: .customLong("database-url"),
            help: """
                postgres:// URL. Default: $DATABASE_URL, else libpq's PGHOST/PGPORT/PGUSER/PGDATABASE. \
                Keep passwords out of it (a command line shows in `ps`): use PGPASSWORD, ~/.pgpass or PGPASSFILE.
                """)
    var url: String?

    func connect() throws -> PostgresConnection { try PostgresConnection(url: url) }
}

struct Migrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply the schema migrations that are missing (safe to run concurrently).",
        discussion: """
            Waits for PostgreSQL to answer, then applies each missing migration of sql/ under an
            advisory lock: many processes may run it at once. Example:
              DATABASE_URL=postgres://crynux@db/crynux crynux-worker migrate
            """)
    @OptionGroup var database: DatabaseOptions
    @Option(help: "Seconds to wait for PostgreSQL (default: until it answers).") var startupTimeout: Double?

    func run() throws {
        // Many processes may migrate at once, also while the server restarts: they wait for it,
        // then one applies each migration under an advisory lock and the rest find nothing to do.
        let (applied, versions) = try waitingForDatabase("migrating", timeout: startupTimeout, log: WorkerLog(name: "migrate")) {
            let db = try database.connect()
            return (try Migrator.migrate(db), try Migrator.appliedVersions(db))
        }
        if applied.isEmpty {
            print("schema is up to date (version \(versions.last.map(String.init) ?? "none"))")
        } else {
            print("applied migration(s) \(applied.map(String.init).joined(separator: ", ")); schema version \(versions.last ?? 0)")
        }
    }
}

struct Submit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Submit a job; prints its id.",
        discussion: """
            The arguments are stored byte for byte (a trailing newline and a byte-order mark are
            dropped): they are what is hashed into the task and uploaded to the Relay. A backend
            usually inserts rows itself; this is the same insert. Example:
              echo '{"base_model":"runwayml/stable-diffusion-v1-5","prompt":"a lighthouse","task_config":{"num_images":1}}' \\
                | crynux-worker submit --kind sd --idempotency-key order-1234
            """)
    @OptionGroup var database: DatabaseOptions
    @Option(help: "Task kind: sd (Stable Diffusion) or gpt.") var kind: String
    @Option(help: "File holding the task-arguments JSON; '-' or absent reads standard input.") var file: String?
    @Option(help: "Higher runs first.") var priority: Int = 0
    @Option(help: "Do not start before this time (ISO 8601, e.g. 2026-11-21T20:00:00Z).") var notBefore: String?
    @Option(help: "A second submit with the same key returns the existing job.") var idempotencyKey: String?
    @Option(help: "Fee for the whole task in wei (default: fee per image × results).") var feeWei: String?
    @Option(help: "VRAM limit in GB (default: derived from the model).") var vramLimit: Int?

    func validate() throws {
        guard ["sd", "gpt"].contains(kind) else { throw ValidationError("--kind must be sd or gpt") }
        guard Int32(exactly: priority) != nil else { throw ValidationError("--priority must be within -2147483648...2147483647") }
        if let vramLimit, !(1...100_000).contains(vramLimit) { throw ValidationError("--vram-limit must be from 1 to 100000 GB") }
        if let feeWei, feeWei.isEmpty || !feeWei.allSatisfy({ $0.isASCII && $0.isNumber }) {
            throw ValidationError("--fee-wei must be a whole number of wei")
        }
    }

    func run() throws {
        let data: Data
        if let file, file != "-" {
            data = try Data(contentsOf: URL(fileURLWithPath: file))
        } else {
            data = FileHandle.standardInput.readDataToEndOfFile()
        }
        guard let args = String(data: data, encoding: .utf8) else { throw ValidationError("task arguments are not UTF-8") }
        var notBeforeDate: Date?
        if let notBefore {
            guard let date = ISO8601DateFormatter().date(from: notBefore) else { throw ValidationError("--not-before is not ISO 8601") }
            notBeforeDate = date
        }
        // A byte-order mark some editors write, and trailing newlines from files and shells, are not
        // part of the arguments (the stored string is what is hashed and uploaded, byte for byte).
        let trimmed = (args.hasPrefix("\u{FEFF}") ? String(args.dropFirst()) : args).trimmingCharacters(in: .whitespacesAndNewlines)
        let id = try JobStore.submit(database.connect(), JobSubmission(
            kind: kind, taskArgs: trimmed, priority: priority, notBefore: notBeforeDate,
            idempotencyKey: idempotencyKey, feeWei: feeWei, vramLimit: vramLimit))
        print(id)
    }
}

struct Prune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete finished jobs past their retention, in small batches (safe while workers run).",
        discussion: """
            Durations are a number and a unit: 90s, 30m, 12h, 7d. A job whose transaction may still
            be mined is kept. Example:
              crynux-worker prune --succeeded-older-than 7d --failed-older-than 30d
              crynux-worker prune --succeeded-older-than 1d --keep-history   # only the result files
            """)
    @OptionGroup var database: DatabaseOptions
    @Option(help: "Delete succeeded jobs finished longer ago than this.") var succeededOlderThan: String?
    @Option(help: "Delete failed and cancelled jobs finished longer ago than this.") var failedOlderThan: String?
    @Flag(help: "Keep the jobs' rows, history and transactions; delete only their result files.") var keepHistory = false
    @Option(help: "Jobs (or result files) per batch; each batch is its own short transaction.") var batch = 1000

    /// A duration such as 90s, 30m, 12h or 7d, in seconds (at most ten years); `wait` reads its
    /// timeout the same way.
    static func seconds(_ text: String) throws -> Double {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        guard let unit = text.last.flatMap({ units[$0] }), let value = Double(text.dropLast()), value >= 0, value.isFinite,
              value * unit <= 315_360_000 else {
            throw ValidationError("\(text) is not a duration such as 90s, 30m, 12h or 7d")
        }
        return value * unit
    }

    func run() throws {
        guard succeededOlderThan != nil || failedOlderThan != nil else {
            throw ValidationError("say what to prune: --succeeded-older-than and/or --failed-older-than")
        }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        let now = Date()
        let succeeded = try succeededOlderThan.map { now.addingTimeInterval(-(try Self.seconds($0))) }
        let failed = try failedOlderThan.map { now.addingTimeInterval(-(try Self.seconds($0))) }
        let counts = try JobStore.prune(try database.connect(), succeededBefore: succeeded, failedBefore: failed,
                                        keepHistory: keepHistory, batch: batch)
        print(keepHistory ? "deleted \(counts.results) result file(s) in \(counts.batches) batch(es)"
                          : "deleted \(counts.jobs) job(s) and \(counts.results) result file(s) in \(counts.batches) batch(es)")
    }
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print one job: its facts, its transactions and its timeline.",
        discussion: """
            Exits 3 when there is no such job. Examples:
              crynux-worker show 42
              crynux-worker show 42 --json | jq '.events[].detail'
            """)
    @OptionGroup var database: DatabaseOptions
    @Argument(help: "Job id.") var id: Int64
    @Flag(help: "One JSON object: facts, transactions, events and the stored results (without their bytes).") var json = false

    func run() throws {
        let db = try database.connect()
        guard let job = try JobStore.job(db, id: id) else { throw noSuchJob(id) }
        if json {
            let transactions = try JobStore.allTransactions(db, jobId: id)
            let object: [String: Any] = [
                "facts": Dictionary(job.describedFacts(formatDate: format).map { ($0.name, $0.value) }, uniquingKeysWith: { $1 }),
                "transactions": zip(transactions, StoredTransaction.roles(of: transactions)).map { tx, role -> [String: Any] in
                    ["role": role, "hash": tx.hash.hex, "wallet": tx.wallet.checksummed, "nonce": tx.nonce, "value_wei": tx.value.description,
                     "price": tx.priceDescription, "gas_limit": tx.gasLimit, "state": tx.stateDescription]
                },
                "events": try JobStore.events(db, jobId: id).map { event -> [String: Any] in
                    ["at": format(event.at), "from": event.fromStatus.map { "\($0)/\(event.fromStage ?? "")" } ?? NSNull(),
                     "to": "\(event.toStatus)/\(event.toStage)", "detail": event.detail, "worker": event.worker ?? NSNull()]
                },
                "relay_tasks": try JobStore.relayTasks(db, jobId: id).map { task -> [String: Any] in
                    ["commitment": task.commitment.hex, "attempt": task.attempt, "member": task.member, "fee_wei": task.taskFee.description,
                     "state": task.stateDescription]
                },
                "results": try Dashboard.results(db, jobId: id).map { ["index": $0.index, "content_type": $0.contentType, "bytes": $0.bytes] },
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        for (name, value) in job.describedFacts(formatDate: format) {
            print("\(name.padding(toLength: 18, withPad: " ", startingAt: 0)) \(value)")
        }
        let transactions = try JobStore.allTransactions(db, jobId: id)
        if !transactions.isEmpty { print("transactions:") }
        for (tx, role) in zip(transactions, StoredTransaction.roles(of: transactions)) {
            print("  \(role.padding(toLength: 20, withPad: " ", startingAt: 0)) \(tx.hash.hex)  wallet \(tx.wallet.checksummed) nonce \(tx.nonce)  value \(tx.value) wei, \(tx.priceDescription), gas \(tx.gasLimit)  \(tx.stateDescription)")
        }
        let relayTasks = try JobStore.relayTasks(db, jobId: id)
        if !relayTasks.isEmpty { print("relay tasks:") }
        for task in relayTasks {
            let role = task.member == 0 ? "attempt \(task.attempt)" : "attempt \(task.attempt) member \(task.member)"
            print("  \(role.padding(toLength: 20, withPad: " ", startingAt: 0)) \(task.commitment.hex)  fee \(task.taskFee) wei  \(task.stateDescription)")
        }
        print("history:")
        for event in try JobStore.events(db, jobId: id) {
            let from = event.fromStatus.map { "\($0)/\(event.fromStage ?? "")" } ?? "-"
            print("  \(format(event.at))  \(from) -> \(event.toStatus)/\(event.toStage)  \(event.detail)\(event.worker.map { "  [\($0)]" } ?? "")")
        }
    }
}

struct Cancel: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop a job and free its lease.",
        discussion: """
            A job with nothing signed stops at once. One whose createTask is signed, or whose task
            exists, is marked: the worker fills the nonce instead of paying, or cancels the task
            on chain for its refund, then stops it. Exits 3 when there is no such job. Example:
              crynux-worker cancel 42
            """)
    @OptionGroup var database: DatabaseOptions
    @Argument(help: "Job id.") var id: Int64

    func run() throws {
        switch try missingJobExits { try JobStore.cancel(database.connect(), id: id) } {
        case .cancelled: print("job \(id) cancelled")
        case .requested: print("job \(id): cancel requested; the worker first settles what is on chain (fills the signed nonce, or cancels the task for its refund), then stops it")
        case .alreadyFinished(let status): print("job \(id) is already \(status.rawValue)")
        }
    }
}

struct Retry: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Put a failed job back in the queue (never a second paid task while the first may succeed).",
        discussion: """
            The job restarts from the stage its failure allows: create only when no task of it can
            still succeed on chain, else the stage that failed (its task kept). Exits 3 when there
            is no such job. Example:
              crynux-worker retry 42
            """)
    @OptionGroup var database: DatabaseOptions
    @Argument(help: "Job id.") var id: Int64

    func run() throws {
        switch try missingJobExits { try JobStore.retry(database.connect(), id: id) } {
        case .requeued(let stage): print("job \(id) queued again from stage \(stage.rawValue)")
        case .notFailed(let status): throw ValidationError("job \(id) is \(status.rawValue), not failed")
        case .refused(let reason): throw ValidationError(reason)
        }
    }
}

/// "no job N" on standard error and exit code 3.
func noSuchJob(_ id: Int64) -> ExitCode {
    FileHandle.standardError.write(Data("Error: no job \(id)\n".utf8))
    return ExitCode(3)
}

/// Runs `body`; a job that does not exist ends the command with exit code 3.
func missingJobExits<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as JobStoreError where error.isMissingJob {
        FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
        throw ExitCode(3)
    }
}

func format(_ date: Date) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return formatter.string(from: date)
}

/// The description file `scripts/devnet up` writes: RPC and relay URLs, chain id, contracts.
struct DevnetFile {
    let values: [String: Any]

    init(path: String?) throws {
        guard let path else {
            values = [:]
            return
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ValidationError("\(path) is not a JSON object")
        }
        values = object
    }

    func string(_ key: String) -> String? { values[key] as? String }
    func uint64(_ key: String) -> UInt64? { (values[key] as? NSNumber)?.uint64Value }
}

extension RelayTaskRecord {
    /// "created, EndSuccess, validated" and the like, for `show`.
    var stateDescription: String {
        var words: [String] = [createdAt == nil ? "stored, not created" : "created"]
        if let status = relayStatus.flatMap(LithiumStatus.init(rawValue:)) {
            words.append(status == .endAborted ? "\(status.name) (\(abortReason.flatMap(LithiumAbortReason.init(rawValue:))?.name ?? "?"))" : status.name)
        }
        if let selected = vrfSelected { words.append(selected ? "VRF-selected" : "not selected") }
        if validatedAt != nil { words.append("validated") }
        if cancelSentAt != nil { words.append("cancel sent") }
        return words.joined(separator: ", ")
    }
}
