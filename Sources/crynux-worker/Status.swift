import ArgumentParser
import BigInt
import Ethereum
import Foundation
import JobQueue

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Counts per status and stage, the oldest due job, work in flight, wallets.",
        discussion: """
            Reads indexes only (pending jobs, finished jobs by time): cheap on a large history. With
            an RPC URL each wallet's balance and on-chain nonce are shown too. Examples:
              crynux-worker status
              crynux-worker status --json | jq '.jobs.failed'
              crynux-worker status --rpc-url "$CRYNUX_RPC_URL"
            """)
    @OptionGroup var database: DatabaseOptions
    @Option(help: "JSON-RPC URL, to show each wallet's balance and on-chain nonce [CRYNUX_RPC_URL].") var rpcUrl: String?
    @Option(help: "Network description file written by scripts/devnet (for the RPC URL).") var devnet: String?
    @Flag(help: "One JSON object instead of tables (jobs by status and stage, oldest due job, in flight, wallets).") var json = false

    static let statuses = ["pending", "succeeded", "failed", "cancelled"]
    static let stages = JobStage.allCases.map(\.rawValue)

    func run() throws {
        let report = try StatusReport.load(database.connect())
        var rpc: EthereumClient?
        if let url = try rpcUrl ?? ProcessInfo.processInfo.environment["CRYNUX_RPC_URL"] ?? DevnetFile(path: devnet).string("rpc_url") {
            rpc = EthereumClient(url: url)
        }
        let chain = report.wallets.map { wallet -> (nonce: UInt64, balance: BigUInt)? in
            guard let rpc, let address = Address(hex: wallet.address) else { return nil }
            return try? (rpc.getTransactionCount(address, block: .latest), rpc.getBalance(address))
        }
        func jobs(_ status: String, _ stage: String) -> Int64 {
            report.counts.first { $0.status == status && $0.stage == stage }?.jobs ?? 0
        }
        if json {
            var byStatus: [String: Any] = [:]
            for status in Self.statuses {
                var row: [String: Any] = [:]
                for stage in Self.stages { row[stage] = jobs(status, stage) }
                byStatus[status] = row
            }
            var object: [String: Any] = [
                "jobs": byStatus,
                "in_flight": Dictionary(report.inFlight.map { ($0.worker, $0.jobs) }, uniquingKeysWith: +),
                "wallets": zip(report.wallets, chain).map { wallet, chain -> [String: Any] in
                    var entry: [String: Any] = ["address": wallet.address, "chain_id": wallet.chainId, "next_nonce": wallet.nextNonce]
                    if let chain { entry["mined_nonce"] = chain.nonce; entry["balance_wei"] = chain.balance.description }
                    return entry
                },
            ]
            object["budgets"] = report.budgets.map { use -> [String: Any] in
                ["budget": use.budget.label, "wallet": use.budget.wallet?.checksummed ?? NSNull(), "window_seconds": use.budget.window,
                 "limit_wei": use.budget.limit.description, "used_wei": use.used.description]
            }
            if let id = report.oldestDueJobId, let since = report.oldestDueSince {
                object["oldest_due"] = ["job": id, "due_since": format(since), "seconds": Int(-since.timeIntervalSinceNow)]
            }
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
            return
        }

        // Jobs: statuses down, stages across, totals at the ends.
        var rows = [["status"] + Self.stages + ["total"]]
        for status in Self.statuses {
            let counts = Self.stages.map { jobs(status, $0) }
            rows.append([status] + counts.map(String.init) + [String(counts.reduce(0, +))])
        }
        printTable(rows, rightAligned: 1...)
        if let id = report.oldestDueJobId, let since = report.oldestDueSince {
            print("\noldest due job: \(id), due since \(format(since)) (\(Int(-since.timeIntervalSinceNow)) s)")
        } else {
            print("\noldest due job: none")
        }
        print("\nin flight:")
        if report.inFlight.isEmpty { print("  (none)") } else {
            printTable([["worker", "jobs"]] + report.inFlight.map { [$0.worker, String($0.jobs)] }, rightAligned: 1..., indent: 2)
        }
        print("\nwallets:")
        if report.wallets.isEmpty { print("  (none yet)") } else {
            var table = [["address", "chain", "next nonce"] + (rpc == nil ? [] : ["mined nonce", "balance"])]
            for (wallet, chain) in zip(report.wallets, chain) {
                var row = [wallet.address, String(wallet.chainId), String(wallet.nextNonce)]
                if rpc != nil { row += chain.map { [String($0.nonce), formatEther($0.balance)] } ?? ["unavailable", ""] }
                table.append(row)
            }
            printTable(table, rightAligned: 1..., indent: 2)
        }
        if !report.budgets.isEmpty {
            print("\nbudgets:")
            printTable([["budget", "used", "limit", "share"]] + report.budgets.map {
                [$0.budget.label, cnx($0.used), cnx($0.budget.limit), "\(Int(($0.share * 100).rounded())) %"]
            }, rightAligned: 1..., indent: 2)
        }
    }
}

/// Prints rows as columns padded to their widest cell; columns in `rightAligned` (numbers) are
/// right-aligned. The first row is the header.
func printTable(_ rows: [[String]], rightAligned: PartialRangeFrom<Int>, indent: Int = 0) {
    guard let columns = rows.map(\.count).max() else { return }
    let widths = (0..<columns).map { column in rows.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0 }
    for row in rows {
        let cells = row.enumerated().map { column, cell in
            let pad = String(repeating: " ", count: widths[column] - cell.count)
            return rightAligned.contains(column) ? pad + cell : cell + pad
        }
        print(String(repeating: " ", count: indent) + cells.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression))
    }
}

/// Wei as a decimal amount of the native token (18 decimals), e.g. "12.5 CNX".
func formatEther(_ wei: BigUInt) -> String {
    let unit = BigUInt(10).power(18)
    let whole = wei / unit
    var fraction = String(wei % unit)
    fraction = String(repeating: "0", count: 18 - fraction.count) + fraction
    while fraction.hasSuffix("0") { fraction.removeLast() }
    return fraction.isEmpty ? "\(whole) CNX" : "\(whole).\(fraction.prefix(6)) CNX"
}
