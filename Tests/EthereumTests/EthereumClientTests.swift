import BigInt
import Ethereum
import Foundation
import HTTP
import TestSupport
import Testing
import StrictJSON

@Suite("EthereumClient against a JSON-RPC stub")
struct EthereumClientTests {
    private func lastRequest(_ stub: RPCStub) throws -> JSON {
        try JSON.parse(bytes: HTTPClient().get(stub.url("/last")).body)
    }

    @Test func typedResults() throws {
        let stub = try RPCStub()
        defer { stub.stop() }
        let client = EthereumClient(url: stub.url)
        let account = try #require(Address(hex: "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"))

        #expect(try client.chainId() == 10000)
        #expect(try client.blockNumber() == 436)
        #expect(try client.getBalance(account) == (BigUInt(1) << 256) - 1)
        #expect(try lastRequest(stub)["params"] == ["0x7e5f4552091a69125d5dfcb7b8c2659029395bdf", "latest"])
        #expect(try client.getTransactionCount(account) == 7)
        #expect(try lastRequest(stub)["params"]?.arrayValue?[1] == "pending")
        #expect(try client.getTransactionCount(account, block: .latest) == 5)
        #expect(try client.gasPrice() == 1_000_000_000)
        #expect(try client.maxPriorityFeePerGas() == 0)

        let history = try client.feeHistory(blockCount: 2, newest: .latest, rewardPercentiles: [25, 75])
        #expect(history.oldestBlock == 16)
        #expect(history.baseFeePerGas == [1, 2, 3])
        #expect(history.reward == [[10, 11], [12, 13]])
        #expect(history.gasUsedRatio == [0.5, 0.25])
        #expect(try lastRequest(stub)["params"] == ["0x2", "latest", [25, 75]])

        let call = CallRequest(from: account, to: Address(hex: RPCStub.contract), data: [0x1d, 0x65, 0xe7, 0x7e],
                               value: 5, gas: 100_000)
        #expect(try client.estimateGas(call) == 21000)
        #expect(try lastRequest(stub)["params"] == [[
            "from": "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf", "to": .string(RPCStub.contract),
            "data": "0x1d65e77e", "value": "0x5", "gas": "0x186a0",
        ]])
        #expect(try client.call(call) == [UInt8](repeating: 0, count: 31) + [42])
        #expect(try lastRequest(stub)["params"]?.arrayValue?[1] == "latest")
        #expect(try client.call(CallRequest(to: account), block: .number(255)) == [])
        #expect(try lastRequest(stub)["params"]?.arrayValue?[1] == "0xff")

        #expect(try client.sendRawTransaction([0x02, 0x01]).hex == RPCStub.txHash)
        #expect(try lastRequest(stub)["params"] == ["0x0201"])
    }

    @Test func receiptsAndLogs() throws {
        let stub = try RPCStub()
        defer { stub.stop() }
        let client = EthereumClient(url: stub.url)

        #expect(try client.getTransactionReceipt([UInt8](repeating: 0, count: 32)) == nil)
        let hash = [UInt8](repeating: 0x77, count: 32)
        let receipt = try #require(try client.getTransactionReceipt(hash))
        #expect(receipt.transactionHash == hash)
        #expect(receipt.status)
        #expect(receipt.blockNumber == 16)
        #expect(receipt.gasUsed == 21000)
        #expect(receipt.effectiveGasPrice == 1_000_000_000)
        #expect(receipt.contractAddress == nil)
        #expect(receipt.logs.count == 1)
        #expect(receipt.logs[0].topics[1] == [UInt8](repeating: 0, count: 31) + [42])
        #expect(receipt.logs[0].data == [0x12, 0x34])
        #expect(receipt.logs[0].address == Address(hex: RPCStub.contract))

        let topicA = [UInt8](repeating: 2, count: 32), topicB = [UInt8](repeating: 3, count: 32)
        let filter = LogFilter(fromBlock: .number(16), toBlock: .latest, address: Address(hex: RPCStub.contract),
                               topics: [[topicA, topicB], nil, [topicB]])
        let logs = try client.getLogs(filter)
        #expect(logs.count == 2)
        #expect(logs[1].logIndex == 1)
        #expect(logs[1].topics == [topicB, [UInt8](repeating: 4, count: 32)])
        #expect(try lastRequest(stub)["params"] == [[
            "fromBlock": "0x10", "toBlock": "latest", "address": .string(RPCStub.contract),
            "topics": [[.string(topicA.hex), .string(topicB.hex)], nil, .string(topicB.hex)],
        ]])
    }

    @Test func logQueriesSplitTheirRangeIntoChunksTheNodeAccepts() throws {
        let stub = try RPCStub()
        defer { stub.stop() }
        let limited = Address(hex: "0x" + String(repeating: "22", count: 20))
        // Learned from the refusal: blocks 10...436 (head) in chunks, each block exactly once.
        let client = EthereumClient(url: stub.url)
        let logs = try client.getLogs(LogFilter(fromBlock: .number(10), toBlock: .latest, address: limited))
        #expect(logs.map(\.blockNumber) == Array(10...436))
        // Configured up front: no refused query first.
        let configured = EthereumClient(url: stub.url, logsBlockRange: 50)
        let some = try configured.getLogs(LogFilter(fromBlock: .number(100), toBlock: .number(260), address: limited))
        #expect(some.map(\.blockNumber) == Array(100...260))
        #expect(try lastRequest(stub)["params"]?.arrayValue?.first?["fromBlock"] == "0xfa")
        // A range the node refuses without naming a limit is not guessed at.
        #expect(EthereumClient.logsBlockRangeLimit(in: "maximum [from, to] blocks distance: 10000") == 10_000)
        #expect(EthereumClient.logsBlockRangeLimit(in: "query exceeds max block range 2000") == 1_000)
        #expect(EthereumClient.logsBlockRangeLimit(in: "devnet: injected JSON-RPC error") == nil)
    }

    @Test func batchResultsFollowRequestOrder() throws {
        let stub = try RPCStub()
        defer { stub.stop() }
        let client = EthereumClient(url: stub.url)
        let results = try client.batch([
            (method: "eth_chainId", params: []),
            (method: "eth_no_such_method", params: []),
            (method: "eth_blockNumber", params: []),
            (method: "eth_call", params: EthereumClient.callParams(CallRequest(data: [0xde, 0xad]), block: .latest)),
            (method: "eth_getTransactionReceipt", params: [.string([UInt8](repeating: 0, count: 32).hex)]),
        ])
        #expect(results.count == 5)
        #expect(try EthereumClient.decodeUInt64(results[0].get()) == 10000)
        #expect(try EthereumClient.decodeUInt64(results[2].get()) == 436)
        guard case .failure(let missing) = results[1], case .failure(let reverted) = results[3] else {
            Issue.record("expected failures at 1 and 3: \(results)")
            return
        }
        #expect(missing.code == -32601)
        #expect(reverted.revertReason == .error("Invalid task type"))
        #expect(try EthereumClient.decodeReceipt(results[4].get()) == nil)
        #expect(try client.batch([]).isEmpty)

        // The request is one JSON array with distinct ids.
        let sent = try lastRequest(stub).arrayValue ?? []
        #expect(sent.count == 5)
        #expect(Set(sent.compactMap { $0["id"]?.intValue }).count == 5)
    }

    @Test func batchProblemsAreReported() throws {
        let stub = try RPCStub()
        defer { stub.stop() }
        let calls: [(method: String, params: [JSON])] = [(method: "eth_chainId", params: []),
                                                          (method: "eth_blockNumber", params: [])]
        #expect {
            _ = try EthereumClient(url: stub.url("/dropone")).batch(calls)
        } throws: { error in
            guard case EthereumClientError.malformedResponse(let message) = error else { return false }
            return message.contains("eth_chainId")
        }
        #expect {
            _ = try EthereumClient(url: stub.url("/nobatch")).batch(calls)
        } throws: { error in
            (error as? EthereumClientError)?.rpcError?.message == "batch not supported"
        }
    }

    @Test func rpcErrorsCarryCodeMessageAndRevertReason() throws {
        let stub = try RPCStub()
        defer { stub.stop() }
        let client = EthereumClient(url: stub.url)
        func rpcError(_ body: () throws -> Void) -> JSONRPCError? {
            do {
                try body()
            } catch let error as EthereumClientError {
                #expect(!error.isRetryable)
                return error.rpcError
            } catch {
                Issue.record("unexpected error type \(error)")
            }
            return nil
        }

        let reverted = rpcError { _ = try client.call(CallRequest(data: [0xde, 0xad])) }
        #expect(reverted?.code == 3)
        #expect(reverted?.message == "execution reverted: Invalid task type")
        #expect(reverted?.data?.hex == RPCStub.revertData)
        #expect(reverted?.revertReason == .error("Invalid task type"))

        let panic = rpcError { _ = try client.call(CallRequest(data: [0xbe, 0xef])) }
        #expect(panic?.revertReason == .panic(0x12))
        #expect(panic.map { "\($0)" } == "JSON-RPC error 3: execution reverted (revert: panic 0x12 (division by zero))")

        // Other node dialects for the same revert data.
        let prefixed = rpcError { _ = try client.call(CallRequest(data: [0xca, 0xfe])) }
        #expect(prefixed?.code == -32015)
        #expect(prefixed?.revertReason == .error("Invalid task type"))
        let nested = rpcError { _ = try client.call(CallRequest(data: [0xf0, 0x0d])) }
        #expect(nested?.revertReason == .error("Invalid task type"))

        // No data at all, only the reason in the message.
        let messageOnly = rpcError { _ = try client.call(CallRequest(data: [0xab, 0xcd])) }
        #expect(messageOnly?.data == nil)
        #expect(messageOnly?.revertReason == .error("No available node"))
        #expect(messageOnly.map { "\($0)" } == "JSON-RPC error -32000: execution reverted: No available node")

        let estimate = rpcError { _ = try client.estimateGas(CallRequest(data: [0xde, 0xad])) }
        #expect(estimate?.revertReason == .error("Invalid task type"))

        let nonce = rpcError { _ = try client.sendRawTransaction([0x00]) }
        #expect(nonce?.code == -32000)
        #expect(nonce?.message == "nonce too low")
        #expect(nonce?.data == nil)
        #expect(nonce?.revertReason == nil)

        let unknown = rpcError { _ = try client.call("no_such_method", []) }
        #expect(unknown?.code == -32601)

        let badRequest = rpcError { _ = try EthereumClient(url: stub.url("/http400rpc")).chainId() }
        #expect(badRequest?.code == -32600)
    }

    @Test func transportFailuresAreRetryableAndDistinct() throws {
        let stub = try RPCStub()
        defer { stub.stop() }
        func transport(_ client: EthereumClient) -> String? {
            do {
                _ = try client.chainId()
            } catch let error as EthereumClientError {
                guard case .transport(let message) = error else { return nil }
                #expect(error.isRetryable)
                return message
            } catch {}
            return nil
        }
        #expect(transport(EthereumClient(url: stub.url("/http500")))?.contains("HTTP 500") == true)
        #expect(transport(EthereumClient(url: stub.url("/http429")))?.contains("HTTP 429") == true)
        #expect(transport(EthereumClient(url: stub.url("/slow"), timeout: 0.5))?.contains("timeout") == true)
        let refused = HTTPClient(options: HTTPOptions(connectTimeout: 2))
        #expect(transport(EthereumClient(url: "http://127.0.0.1:\(closedPort())/", http: refused)) != nil)
    }

    @Test func malformedResponses() throws {
        let stub = try RPCStub()
        defer { stub.stop() }
        func malformed(_ body: () throws -> Void) -> Bool {
            do { try body() } catch let error as EthereumClientError {
                if case .malformedResponse = error { return !error.isRetryable }
            } catch {}
            return false
        }
        #expect(malformed { _ = try EthereumClient(url: stub.url("/notjson")).chainId() })
        let client = EthereumClient(url: stub.url)
        #expect(malformed { _ = try client.call("bad_result", []) })
        #expect(malformed { _ = try client.call("wrong_id", []) })
        #expect(malformed { _ = try EthereumClient.decodeQuantity("12") })
        #expect(malformed { _ = try EthereumClient.decodeUInt64("0x10000000000000000") })
        #expect(malformed { _ = try EthereumClient.decodeCallResult("0x123") })
        #expect(try EthereumClient.decodeQuantity("0x0") == 0)
    }

    @Test func concurrentCallsShareOneClient() throws {
        let stub = try RPCStub()
        defer { stub.stop() }
        let client = EthereumClient(url: stub.url)
        let failures = Counter()
        DispatchQueue.concurrentPerform(iterations: 6) { _ in
            for _ in 0..<15 {
                do {
                    if try client.chainId() != 10000 { failures.increment() }
                    let r = try client.batch([(method: "eth_blockNumber", params: []), (method: "eth_gasPrice", params: [])])
                    if try EthereumClient.decodeUInt64(r[0].get()) != 436 { failures.increment() }
                } catch {
                    failures.increment()
                }
            }
        }
        #expect(failures.value == 0)
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}

