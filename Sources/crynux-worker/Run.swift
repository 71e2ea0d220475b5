import ArgumentParser
import BigInt
import Crynux
import Ethereum
import Foundation
import Monitoring
import Worker

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the worker: claim due jobs and move them through their stages (Lithium: create, poll, validate, fetch).",
        discussion: """
            Every option can also come from the environment variable in brackets. The private key
            comes from CRYNUX_PRIVATE_KEY or the file named by --private-key-file
            (CRYNUX_PRIVATE_KEY_FILE); it is never read from a job and never logged.
            --devnet FILE reads the profile, relay URL (and for era D and Hydrogen the RPC URL,
            chain id and contract addresses) from the description file that `scripts/devnet up`
            writes. The Lithium profile (the default: the network that runs today) needs only the
            Relay URL and a wallet whose Relay Account holds CNX. SIGTERM or SIGINT stops claiming,
            lets stages in flight finish within --shutdown-grace, hands the other leases back and
            exits 0. Examples:
              CRYNUX_PRIVATE_KEY_FILE=/run/secrets/wallet crynux-worker run --relay-url https://…
              crynux-worker run --profile era-d --rpc-url https://… --relay-url https://… \\
                --task-contract 0x… --task-queue-contract 0x… --chain-id 10000
              crynux-worker run --devnet devnet.json --metrics-port 9464 --log-format json
            """)

    @OptionGroup var database: DatabaseOptions

    @Option(help: "Network description file written by scripts/devnet (fills the network options below).")
    var devnet: String?
    @Option(help: "JSON-RPC URL of the chain [CRYNUX_RPC_URL].") var rpcUrl: String?
    @Option(help: "Relay base URL [CRYNUX_RELAY_URL].") var relayUrl: String?
    @Option(help: "Expected chain id, checked against the node [CRYNUX_CHAIN_ID].") var chainId: UInt64?
    @Option(help: "Task contract address [CRYNUX_TASK_CONTRACT].") var taskContract: String?
    @Option(help: "Network generation: lithium (the live network: signed requests to the Relay, fees from the Relay Account; the default), era-d (payable createTask, a task queue) or hydrogen (the wallet approves CNX for the Task contract) [CRYNUX_PROFILE].")
    var profile: String?
    @Option(help: "TaskQueue contract address (era D) [CRYNUX_TASK_QUEUE_CONTRACT].") var taskQueueContract: String?
    @Option(help: "CNX token contract address (hydrogen) [CRYNUX_TOKEN_CONTRACT].") var tokenContract: String?
    @Option(help: "Node contract address (hydrogen) [CRYNUX_NODE_CONTRACT]: createTasks are admitted against its free nodes. Without it, a createTask that finds too few free nodes by its block reverts and costs its gas.")
    var nodeContract: String?
    @Option(help: "Hydrogen: what an approval allows when the allowance is short of a task's fee: balance (the wallet's CNX balance, the default, as the network's bridge did), unlimited, none (never approve: a short allowance fails the job, nothing spent), or an amount in wei.")
    var approve: String?
    @Option(help: "Hydrogen: the CNX a task costs, in wei (the contract's fee per node × 3; default 30 CNX), which the wallet must hold and allow before a createTask is signed.")
    var tokenTaskFeeWei: String?
    @Option(help: "Lithium: the fee per SD image in wei (default 2 CNX, the bridge's SDXL price; the Relay starts the best-paid work first) [CRYNUX_SD_FEE_PER_IMAGE_WEI].")
    var sdFeePerImageWei: String?
    @Option(help: "Lithium: the fee of a GPT task in wei (default 5 CNX, the bridge's) [CRYNUX_GPT_FEE_WEI].") var gptFeeWei: String?
    @Option(help: "Lithium: the Relay's creator-validation timeout in seconds (600 on the live network): a validation group not complete this long minus --validation-margin after its task became ready is validated as it stands.")
    var validationTimeout = 600.0
    @Option(help: "Lithium: seconds before the Relay's validation timeout when an incomplete validation group stops waiting.") var validationMargin = 120.0
    @Option(help: "Lithium: most requests per second to the Relay from this process, all wallets together (0: no limit).") var relayRequestRate = 0.0
    @Option(help: ArgumentHelp("File holding a wallet's private key (hex), or a folder of such files; repeat for several wallets [CRYNUX_PRIVATE_KEY_FILE].",
                               valueName: "path"))
    var privateKeyFile: [String] = []

    @Option(help: "Stage executions at once in this process.") var concurrency = 4
    @Option(help: "Jobs of create, upload and fetch claimed per free thread per round trip.") var claimBatch = 8
    @Option(help: "Due polls claimed at most per round trip, on top; they go to the node as one JSON-RPC batch (keep it within the node's batch limit: 1,000 on geth).")
    var pollBatch = 500
    @Option(help: "Lease length in seconds.") var leaseSeconds = 120.0
    @Option(help: "First interval between getTask polls, seconds.") var pollInterval = 1.0
    @Option(help: "Longest interval between getTask polls, seconds.") var pollIntervalMax = 30.0
    @Option(help: "Fee per result (image) in wei (default 4.1 CNX, what the network's bridge paid; a lower fee starts last and is evicted first from a busy queue, without refund) [CRYNUX_FEE_PER_RESULT_WEI].")
    var feePerResultWei: String?
    @Option(help: "The stable-diffusion-task schema the network's Relay enforces: 68b52d2 (era D until 2024-08-13, the default) or 8fcf6e7 (later) [CRYNUX_SD_SCHEMA].")
    var sdSchema: String?
    @Option(help: "Widest block range of one eth_getLogs (default: whole ranges, split when the node names its limit).")
    var logsBlockRange: UInt64?
    @Option(help: "A spending cap every worker enforces together, kept in crynux.budgets: AMOUNT/WINDOW per wallet of this worker (50cnx/hour, 500cnx/day, 0.5cnx/10m), or total:AMOUNT/WINDOW for all wallets together; repeatable. A job whose payment would pass one waits in create, nothing signed or sent.")
    var budget: [String] = []
    @Option(help: "The most one job may pay for its task, in wei (era D: the createTask value; Hydrogen: the CNX fee; Lithium: the Relay task fee): a job that asks more fails, nothing paid.")
    var maxFeePerJob: String?
    @Option(help: "Fixed createTask gas limit (default: estimate, refusing creates that would revert).") var gasLimit: UInt64?
    @Option(help: "Fixed gas price in wei (default: the node's).") var gasPriceWei: String?
    @Flag(help: "Send EIP-1559 (type 2) transactions instead of legacy EIP-155 ones.") var eip1559 = false
    @Option(help: "Longest wait, in seconds, between two tries after network failures (the wait doubles per failed try).")
    var retryMax = 60.0
    @Option(help: "Seconds before an unmined transaction is sent again.") var rebroadcastAfter = 10.0
    @Option(help: "Seconds before an unmined createTask is replaced at a higher price.") var replaceAfter = 60.0
    @Option(help: "Highest gas price (or max fee) a replacement may pay, in wei (default: 3 × the first price).") var maxGasPriceWei: String?
    @Option(help: "A replacement never spends more gas than this share of the task's fee (0 to 1; default: no such limit).")
    var maxGasShareOfFee: Double?
    @Option(help: "Seconds a createTask may stay unmined before its nonce is filled and the job fails without a task.")
    var createDeadline = 900.0
    @Option(help: "Times a task evicted from the full on-chain queue is created again.") var maxRecreations = 3
    @Option(help: "Seconds a task may wait in the queue (on chain, or the Lithium Relay's) before it is cancelled for its refund.") var queueTimeout = 900.0
    @Option(help: "Seconds a job waits before it looks again while creating could evict our own queued tasks.")
    var admissionRetry = 3.0
    @Option(help: "Seconds between two rounds of the wallet keeper (re-sends or fills transactions no stage follows).")
    var keeperInterval = 10.0
    @Option(help: "Retention: delete succeeded jobs finished longer ago than this (90s, 30m, 12h, 7d), every --prune-interval.")
    var pruneSucceededOlderThan: String?
    @Option(help: "Retention: delete failed and cancelled jobs finished longer ago than this.") var pruneFailedOlderThan: String?
    @Option(help: "Seconds between two retention passes (with --prune-*-older-than).") var pruneInterval = 600.0
    @Option(help: "Seconds the upload stage may take.") var uploadDeadline = 600.0
    @Option(help: "Seconds the fetch stage may take.") var fetchDeadline = 1800.0
    @Option(help: "Seconds after the task's on-chain deadline before we cancel it for the refund.") var cancelGrace = 30.0
    @Option(help: "Seconds stages in flight may take after SIGTERM.") var shutdownGrace = 20.0
    @Option(help: "Seconds to wait for PostgreSQL at start (default: until it answers).") var startupTimeout: Double?
    @Option(help: "PEM file of the certificate authorities to trust for the node and the Relay (a private CA) [CRYNUX_CA_FILE]. Certificates and host names are always verified.")
    var caFile: String?
    @Option(help: "Name in leases and history (default host:pid); a random suffix keeps two processes with one name apart.")
    var workerName: String?
    @Option(help: "Seconds between two looks of a job whose wallet cannot pay for its createTask (it waits, it does not fail).")
    var fundsRetry = 15.0
    @Option(help: "Seconds between two balance checks of every wallet (the wallet watch).") var walletCheckInterval = 60.0
    @Option(help: "The wallet watch warns (log and crynux_wallet_low_funds) when a wallet holds less than this many jobs' fees and gas.")
    var lowFundsJobs = 10
    @Option(help: "Port of the monitoring server: /metrics, /healthz and the dashboard (default: none; 0 picks a free port, logged) [CRYNUX_METRICS_PORT].")
    var metricsPort: UInt16?
    @Option(help: "Address the monitoring server listens on (IPv4; the dashboard shows job results, so keep it private) [CRYNUX_METRICS_ADDRESS].")
    var metricsAddress: String?
    @Option(help: "Seconds between two samples of the database gauges on /metrics (jobs by status and stage, oldest due job).")
    var metricsSampleInterval = 15.0
    @Option(help: "A block explorer's transaction page for the dashboard's links, with {hash} for the hash, e.g. https://explorer.example/tx/{hash}.")
    var explorerTxUrl: String?
    @Option(help: "Log lines as text (for people) or json (one object per line, for log shippers) [CRYNUX_LOG_FORMAT].")
    var logFormat: String?
    @Option(help: "Lowest level logged: debug, info, warning or error [CRYNUX_LOG_LEVEL].") var logLevel: String?
    @Flag(help: "Exit when no job is pending.") var exitWhenIdle = false
    @Flag(help: "Log only errors (--log-level error).") var quiet = false

    func run() throws {
        let env = ProcessInfo.processInfo.environment
        let described = try DevnetFile(path: devnet)
        func setting(_ flag: String?, _ variable: String, _ key: String) -> String? {
            flag ?? env[variable].flatMap { $0.isEmpty ? nil : $0 } ?? described.string(key)
        }
        let profileName = setting(profile, "CRYNUX_PROFILE", "profile") ?? NetworkProfile.lithium.rawValue
        guard let chosen = NetworkProfile(rawValue: profileName) else {
            throw ValidationError("--profile must be one of \(NetworkProfile.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let relay = setting(relayUrl, "CRYNUX_RELAY_URL", "relay_url") else { throw ValidationError("no relay URL: --relay-url or CRYNUX_RELAY_URL") }
        // Lithium has no chain: no node, no contracts.
        var rpc = ""
        var task = Address(bytes: [UInt8](repeating: 0, count: 20))
        var queue: Address?
        var token: Address?
        var node: Address?
        if chosen != .lithium {
            guard let url = setting(rpcUrl, "CRYNUX_RPC_URL", "rpc_url") else { throw ValidationError("no RPC URL: --rpc-url or CRYNUX_RPC_URL") }
            rpc = url
            guard let taskHex = setting(taskContract, "CRYNUX_TASK_CONTRACT", "task_contract"), let address = Address(hex: taskHex) else {
                throw ValidationError("no valid Task contract address: --task-contract or CRYNUX_TASK_CONTRACT")
            }
            task = address
        }
        switch chosen {
        case .lithium:
            break
        case .eraD:
            guard let queueHex = setting(taskQueueContract, "CRYNUX_TASK_QUEUE_CONTRACT", "task_queue_contract"), let address = Address(hex: queueHex) else {
                throw ValidationError("no valid TaskQueue contract address: --task-queue-contract or CRYNUX_TASK_QUEUE_CONTRACT")
            }
            queue = address
        case .hydrogen:
            guard let tokenHex = setting(tokenContract, "CRYNUX_TOKEN_CONTRACT", "token_contract"), let address = Address(hex: tokenHex) else {
                throw ValidationError("no valid CNX token contract address: --token-contract or CRYNUX_TOKEN_CONTRACT")
            }
            token = address
            if let nodeHex = setting(nodeContract, "CRYNUX_NODE_CONTRACT", "node_contract") {
                guard let address = Address(hex: nodeHex) else { throw ValidationError("--node-contract is not a valid address") }
                node = address
            }
        }
        let expectedChain = chainId ?? env["CRYNUX_CHAIN_ID"].flatMap(UInt64.init) ?? described.uint64("chain_id")

        var keys: [PrivateKey] = []
        let paths = privateKeyFile.isEmpty ? (env["CRYNUX_PRIVATE_KEY_FILE"].map { [$0] } ?? []) : privateKeyFile
        for path in paths {
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
                for name in try FileManager.default.contentsOfDirectory(atPath: path).sorted() where !name.hasPrefix(".") {
                    keys.append(try PrivateKey(contentsOfFile: (path as NSString).appendingPathComponent(name)))
                }
            } else {
                keys.append(try PrivateKey(contentsOfFile: path))
            }
        }
        if keys.isEmpty, let hex = env["CRYNUX_PRIVATE_KEY"], !hex.isEmpty {
            keys.append(try PrivateKey(hex: hex))
        }
        // Read once; it need not stay where child processes and /proc/PID/environ show it (that
        // file shows the process's first environment block, so the bytes are wiped in place).
        if let value = getenv("CRYNUX_PRIVATE_KEY") { memset(value, 0, strlen(value)) }
        unsetenv("CRYNUX_PRIVATE_KEY")
        guard !keys.isEmpty else { throw ValidationError("no private key: set CRYNUX_PRIVATE_KEY or --private-key-file") }
        guard Set(keys.map(\.address)).count == keys.count else { throw ValidationError("the same wallet key is given twice") }

        var config = WorkerConfig(databaseURL: database.url, rpcURL: rpc, relayURL: relay, expectedChainId: expectedChain,
                                  taskContract: task, taskQueueContract: queue, keys: keys,
                                  workerName: workerName ?? WorkerConfig.defaultWorkerName())
        config.profile = chosen
        config.tokenContract = token
        config.nodeContract = node
        if let tokenTaskFeeWei {
            guard let wei = BigUInt(tokenTaskFeeWei), wei > 0 else { throw ValidationError("--token-task-fee-wei must be a positive whole number") }
            config.tokenTaskFeeWei = wei
        }
        switch approve {
        case nil, "balance"?: config.approval = .balance
        case "unlimited"?: config.approval = .unlimited
        case "none"?: config.approval = ApprovalPolicy.none
        case let amount?:
            guard let wei = BigUInt(amount), wei >= config.tokenTaskFeeWei else {
                throw ValidationError("--approve must be balance, unlimited, none or an amount in wei of at least one task's fee")
            }
            config.approval = .amount(wei)
        }
        config.concurrency = concurrency
        config.claimBatch = claimBatch
        guard pollBatch >= 1 else { throw ValidationError("--poll-batch must be at least 1") }
        config.pollBatch = pollBatch
        config.leaseSeconds = leaseSeconds
        config.pollInterval = pollInterval
        config.pollIntervalMax = pollIntervalMax
        if let fee = feePerResultWei ?? env["CRYNUX_FEE_PER_RESULT_WEI"] {
            guard let wei = BigUInt(fee) else { throw ValidationError("--fee-per-result-wei must be a whole number") }
            config.feePerResultWei = wei
        }
        if chosen == .lithium { config.sdSchema = SDSchema.lithiumDefault }
        if let name = sdSchema ?? env["CRYNUX_SD_SCHEMA"] {
            guard let schema = SDSchema(rawValue: name) else {
                throw ValidationError("--sd-schema must be one of \(SDSchema.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            config.sdSchema = schema
        }
        // The Hydrogen Relay (fa0afaa) checked stable-diffusion-task@c0d652a's schema, whose
        // rules are 68b52d2's: a newer one would let arguments through that it refuses.
        if chosen == .hydrogen, config.sdSchema != SDSchema.hydrogenDefault {
            throw ValidationError("--sd-schema \(config.sdSchema.rawValue) is not the Hydrogen Relay's; it enforces \(SDSchema.hydrogenDefault.rawValue) (stable-diffusion-task@c0d652a)")
        }
        // The Lithium Relay checks stable-diffusion-task main's schema; the older ones are not it.
        if chosen == .lithium, config.sdSchema != SDSchema.lithiumDefault {
            throw ValidationError("--sd-schema \(config.sdSchema.rawValue) is not the Lithium Relay's; it enforces \(SDSchema.lithiumDefault.rawValue)")
        }
        if chosen != .lithium, config.sdSchema == .lithium {
            throw ValidationError("--sd-schema lithium is the Lithium Relay's; the \(chosen.rawValue) Relay refuses much of what it allows")
        }
        for (flag, variable, value, apply) in [
            ("--sd-fee-per-image-wei", "CRYNUX_SD_FEE_PER_IMAGE_WEI", sdFeePerImageWei, { (wei: BigUInt, config: inout WorkerConfig) in config.lithiumSDFeePerImageWei = wei }),
            ("--gpt-fee-wei", "CRYNUX_GPT_FEE_WEI", gptFeeWei, { (wei: BigUInt, config: inout WorkerConfig) in config.lithiumGPTFeeWei = wei }),
        ] as [(String, String, String?, (BigUInt, inout WorkerConfig) -> Void)] {
            guard let text = value ?? env[variable].flatMap({ $0.isEmpty ? nil : $0 }) else { continue }
            guard let wei = BigUInt(text), wei > 0 else { throw ValidationError("\(flag) must be a positive whole number of wei") }
            apply(wei, &config)
        }
        guard validationTimeout > 0, validationMargin >= 0, validationMargin < validationTimeout else {
            throw ValidationError("--validation-margin must be at least 0 and less than --validation-timeout")
        }
        config.lithiumValidationTimeout = validationTimeout
        config.lithiumValidationMargin = validationMargin
        guard relayRequestRate >= 0 else { throw ValidationError("--relay-request-rate must be at least 0") }
        config.relayRequestRate = relayRequestRate
        if let logsBlockRange {
            guard logsBlockRange > 0 else { throw ValidationError("--logs-block-range must be at least 1") }
            config.logsBlockRange = logsBlockRange
        }
        config.gasLimit = gasLimit
        if let gasPriceWei {
            guard let wei = BigUInt(gasPriceWei) else { throw ValidationError("--gas-price-wei must be a whole number") }
            config.gasPriceWei = wei
        }
        config.useEIP1559 = eip1559
        if let maxGasPriceWei {
            guard let wei = BigUInt(maxGasPriceWei) else { throw ValidationError("--max-gas-price-wei must be a whole number") }
            config.maxGasPriceWei = wei
        }
        config.maxGasShareOfFee = maxGasShareOfFee
        do {
            config.budgets = try budget.map(BudgetSpec.parse)
        } catch let invalid as BudgetSpec.Invalid {
            throw ValidationError(invalid.description)
        }
        if let maxFeePerJob {
            guard let wei = BigUInt(maxFeePerJob), wei > 0 else { throw ValidationError("--max-fee-per-job must be a positive whole number of wei") }
            config.maxFeePerJobWei = wei
        }
        config.createDeadline = createDeadline
        config.maxRecreations = maxRecreations
        config.queueTimeout = queueTimeout
        config.admissionRetry = admissionRetry
        config.keeperInterval = keeperInterval
        config.pruneSucceededAfter = try pruneSucceededOlderThan.map(Prune.seconds)
        config.pruneFailedAfter = try pruneFailedOlderThan.map(Prune.seconds)
        guard pruneInterval >= 1 else { throw ValidationError("--prune-interval must be at least 1 second") }
        config.pruneInterval = pruneInterval
        guard retryMax >= 1 else { throw ValidationError("--retry-max must be at least 1 second") }
        config.retryMax = retryMax
        config.rebroadcastAfter = rebroadcastAfter
        config.replaceAfter = replaceAfter
        config.uploadDeadline = uploadDeadline
        config.fetchDeadline = fetchDeadline
        config.cancelGrace = cancelGrace
        config.shutdownGrace = shutdownGrace
        config.startupTimeout = startupTimeout
        config.caFile = caFile ?? env["CRYNUX_CA_FILE"]
        config.exitWhenIdle = exitWhenIdle
        guard fundsRetry >= 1, walletCheckInterval >= 1 else { throw ValidationError("--funds-retry and --wallet-check-interval must be at least 1 second") }
        config.fundsRetry = fundsRetry
        config.walletCheckInterval = walletCheckInterval
        guard lowFundsJobs >= 1 else { throw ValidationError("--low-funds-jobs must be at least 1") }
        config.lowFundsJobs = lowFundsJobs

        let formatName = logFormat ?? env["CRYNUX_LOG_FORMAT"] ?? LogFormat.text.rawValue
        guard let format = LogFormat(rawValue: formatName) else {
            throw ValidationError("--log-format must be one of \(LogFormat.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let levelName = quiet ? "error" : (logLevel ?? env["CRYNUX_LOG_LEVEL"] ?? "info")
        guard let log = WorkerLog(name: config.workerName, format: format, levelName: levelName) else {
            throw ValidationError("--log-level must be one of \(WorkerLog.levelNames.joined(separator: ", "))")
        }
        do {
            config = try config.validated()
        } catch let error as WorkerError {
            throw ValidationError(error.description)
        }
        let runtime = WorkerRuntime(config: config, log: log)
        let signals = runtime.installSignalHandlers()
        defer { signals.forEach { $0.cancel() } }

        var monitor: MonitorServer?
        if let port = try metricsPort ?? env["CRYNUX_METRICS_PORT"].map(Self.port) {
            let options = MonitorServer.Options(address: metricsAddress ?? env["CRYNUX_METRICS_ADDRESS"] ?? "127.0.0.1", port: port,
                                                explorerTxURL: explorerTxUrl, sampleInterval: max(metricsSampleInterval, 0.1),
                                                networkName: chosen == .lithium ? "relay" : "chain")
            let server = MonitorServer(options: options, connect: { [config] in try config.connectDatabase() },
                                       chainCheck: { [runtime] in
                                           if let relay = runtime.connectedRelay { return .relay(time: try relay.serverTime()) }
                                           guard let network = runtime.connectedNetwork else { return nil }
                                           return .chain(node: try network.nodeChainId(), expected: network.chainId)
                                       }, log: log)
            let bound = try server.start()
            log.info("monitoring on http://\(options.address):\(bound)/ (/metrics, /healthz, the dashboard)")
            monitor = server
        }
        defer { monitor?.stop() }
        try runtime.run()
    }

    static func port(_ text: String) throws -> UInt16 {
        guard let port = UInt16(text) else { throw ValidationError("CRYNUX_METRICS_PORT must be a port number") }
        return port
    }
}
