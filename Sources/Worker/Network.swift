import BigInt
import Crynux
import Ethereum
import Foundation
import HTTP
import Postgres

/// The chain and relay a worker talks to, with the wallet that pays. Shared by all threads.
struct Network: Sendable {
    let rpc: EthereumClient
    let relay: RelayClient
    let task: TaskContract
    let queue: TaskQueueContract
    let key: PrivateKey
    let address: Address
    let chainId: UInt64
    let config: WorkerConfig

    /// Lowercase 0x address, as stored in `crynux.wallets`.
    var walletHex: String { address.bytes.hex }

    static func connect(_ config: WorkerConfig) throws -> Network {
        let http = HTTPClient(options: HTTPOptions(connectTimeout: 5, totalTimeout: 20))
        let rpc = EthereumClient(url: config.rpcURL, http: http)
        let chainId = try rpc.chainId()
        if let expected = config.expectedChainId, expected != chainId {
            throw WorkerError("the node at \(config.rpcURL) serves chain \(chainId), not the configured chain \(expected)")
        }
        return Network(rpc: rpc,
                       relay: RelayClient(baseURL: config.relayURL, key: config.key, http: http),
                       task: TaskContract(address: config.taskContract),
                       queue: TaskQueueContract(address: config.taskQueueContract),
                       key: config.key, address: config.key.address, chainId: chainId, config: config)
    }

    /// Makes sure the wallet row exists and is not behind the chain: a nonce the chain has
    /// already seen used (by us earlier, or by anyone else) is never handed out again.
    func reconcileWallet(_ db: PostgresConnection) throws {
        let pending = try rpc.getTransactionCount(address, block: .pending)
        try db.execute("""
            INSERT INTO crynux.wallets (address, chain_id, next_nonce) VALUES ($1, $2, $3)
            ON CONFLICT (address) DO UPDATE
                SET next_nonce = greatest(crynux.wallets.next_nonce, EXCLUDED.next_nonce),
                    chain_id = EXCLUDED.chain_id, updated_at = now()
            """, [walletHex, Int64(chainId), Int64(pending)])
    }
}

struct WorkerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The lease was lost while a stage ran: someone else owns the job now; drop our result.
struct LeaseLost: Error {}
