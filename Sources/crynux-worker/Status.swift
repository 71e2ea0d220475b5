import ArgumentParser
import BigInt
import Ethereum
import Foundation
import JobQueue

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Counts per status and stage, the oldest due job, work in flight, wallets.")
    @OptionGroup var database: DatabaseOptions
    @Option(help: "JSON-RPC URL, to show each wallet's balance and on-chain nonce [CRYNUX_RPC_URL].") var rpcUrl: String?
    @Option(help: "Network description file written by scripts/devnet (for the RPC URL).") var devnet: String?

    func run() throws {
        let report = try StatusReport.load(database.connect())
        var rpc: EthereumClient?
        if let url = try rpcUrl ?? ProcessInfo.processInfo.environment["CRYNUX_RPC_URL"] ?? DevnetFile(path: devnet).string("rpc_url") {
            rpc = EthereumClient(url: url)
        }
        print("jobs:")
        if report.counts.isEmpty { print("  (none)") }
        for count in report.counts {
            print("  \(count.status.padding(toLength: 10, withPad: " ", startingAt: 0)) \(count.stage.padding(toLength: 7, withPad: " ", startingAt: 0)) \(count.jobs)")
        }
        if let id = report.oldestDueJobId, let since = report.oldestDueSince {
            print("oldest due job: \(id), due since \(format(since)) (\(Int(-since.timeIntervalSinceNow)) s)")
        } else {
            print("oldest due job: none")
        }
        print("in flight:")
        if report.inFlight.isEmpty { print("  (none)") }
        for load in report.inFlight { print("  \(load.worker): \(load.jobs)") }
        print("wallets:")
        if report.wallets.isEmpty { print("  (none yet)") }
        for wallet in report.wallets {
            var line = "  \(wallet.address) chain \(wallet.chainId) next nonce \(wallet.nextNonce)"
            if let rpc, let address = Address(hex: wallet.address) {
                do {
                    let balance = try rpc.getBalance(address)
                    let mined = try rpc.getTransactionCount(address, block: .latest)
                    line += "; on chain: nonce \(mined), balance \(formatEther(balance))"
                } catch {
                    line += "; on chain: unavailable (\(error))"
                }
            }
            print(line)
        }
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
