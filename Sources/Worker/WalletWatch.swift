import BigInt
import Crynux
import Ethereum
import Foundation
import JobQueue

/// Looks at every wallet's balances now and then: below the cost of the next `lowFundsJobs`
/// jobs it warns (a log line and `crynux_wallet_low_funds` = 1), and tells again when funds are
/// back. The jobs themselves wait in create when a wallet cannot pay for the next one.
///
/// A job's cost, for the threshold: era D, one result's fee plus gas at the minimum createTask
/// gas limit and the node's price; Hydrogen, the task's CNX fee (token balance) and that gas
/// (native balance). A job of several images costs more in era D: the threshold is a floor.
protocol FundsWatch: AnyObject, Sendable {
    func check(_ wallets: [Wallet])
}

final class WalletWatch: FundsWatch, @unchecked Sendable {  // used by the keeper thread alone
    let network: any TaskNetwork
    let config: WorkerConfig
    let log: WorkerLog
    private var low: Set<Address> = []

    init(network: any TaskNetwork, config: WorkerConfig, log: WorkerLog) {
        self.network = network
        self.config = config
        self.log = log
    }

    func check(_ wallets: [Wallet]) {
        for wallet in wallets {
            do {
                let funds = try network.funds(of: wallet.address)
                let jobs = BigUInt(max(config.lowFundsJobs, 1))
                let gasPerJob = (config.gasPriceWei ?? funds.gasPrice) * BigUInt(config.gasLimit ?? config.minimumGasLimit)
                var short: [String] = []
                if let token = funds.token {
                    if token < config.tokenTaskFeeWei * jobs { short.append("\(WorkerMetrics.cnx(token)) CNX tokens") }
                    if funds.native < gasPerJob * jobs { short.append("\(WorkerMetrics.cnx(funds.native)) for gas") }
                } else if funds.native < (config.feePerResultWei + gasPerJob) * jobs {
                    short.append("\(WorkerMetrics.cnx(funds.native)) CNX")
                }
                let address = wallet.address.checksummed
                WorkerMetrics.wallet(address, native: funds.native, token: funds.token,
                                     unminedNonces: Int64(clamping: funds.unminedNonces), low: !short.isEmpty)
                let fields = WorkerLog.Fields(wallet: address)
                if !short.isEmpty, low.insert(wallet.address).inserted {
                    log.warning("wallet \(address) is low on funds: it holds \(short.joined(separator: " and ")), less than \(jobs) jobs need; jobs wait in create once it cannot pay for the next one",
                                fields)
                } else if short.isEmpty, low.remove(wallet.address) != nil {
                    log.info("wallet \(address) holds enough for \(jobs) jobs again", fields)
                }
            } catch {
                log.error("wallet watch \(wallet.address.checksummed): \(error)", .init(wallet: wallet.address.checksummed))
            }
        }
    }
}

/// Lithium: the same watch over the wallets' Relay Accounts (the signed v2 balance read). A job's
/// cost, for the threshold, is the dearer of one GPT task and one SD image at the configured fees
/// (a floor: an SD job of several images costs more).
final class RelayAccountWatch: FundsWatch, @unchecked Sendable {  // used by the keeper thread alone
    let relays: [Address: any LithiumRelay]
    let config: WorkerConfig
    let log: WorkerLog
    private var low: Set<Address> = []

    init(relays: [Address: any LithiumRelay], config: WorkerConfig, log: WorkerLog) {
        self.relays = relays
        self.config = config
        self.log = log
    }

    func check(_ wallets: [Wallet]) {
        for wallet in wallets {
            guard let relay = relays[wallet.address] else { continue }
            let address = wallet.address.checksummed
            do {
                let balance = try relay.balance()
                let jobs = BigUInt(max(config.lowFundsJobs, 1))
                let short = balance < max(config.lithiumSDFeePerImageWei, config.lithiumGPTFeeWei) * jobs
                WorkerMetrics.relayAccount(address, balance: balance, low: short)
                let fields = WorkerLog.Fields(wallet: address)
                if short, low.insert(wallet.address).inserted {
                    log.warning("the Relay Account of \(address) is low on funds: it holds \(cnx(balance)), less than \(jobs) jobs need; jobs wait in create once it cannot pay for the next one (fund it by sending CNX to the Relay's deposit address)",
                                fields)
                } else if !short, low.remove(wallet.address) != nil {
                    log.info("the Relay Account of \(address) holds enough for \(jobs) jobs again", fields)
                }
            } catch {
                log.error("wallet watch \(address): \(error)", .init(wallet: address))
            }
        }
    }
}
