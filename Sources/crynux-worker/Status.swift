import ArgumentParser
import Foundation
import JobQueue

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Counts per status and stage, the oldest due job, work in flight, wallets.")
    @OptionGroup var database: DatabaseOptions

    func run() throws {
        let report = try StatusReport.load(database.connect())
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
            print("  \(wallet.address) chain \(wallet.chainId) next nonce \(wallet.nextNonce)")
        }
    }
}

