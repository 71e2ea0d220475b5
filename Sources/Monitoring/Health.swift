import Dispatch
import Foundation
import JobQueue

/// `/healthz`: the process answers, the database answers with this build's schema, and the node
/// serves the expected chain. 200 when all hold, 503 otherwise, with a JSON body saying which.
enum Health {
    static func check(database: DatabaseLane, chain: @escaping MonitorServer.ChainCheck, networkName: String = "chain") async -> (healthy: Bool, body: String) {
        var body: [String: Any] = [:]
        var healthy = true
        do {
            try await database.run { try Dashboard.ping($0) }
            body["database"] = "ok"
        } catch {
            healthy = false
            body["database"] = "\(error)"
        }
        // The node client blocks: asked on a queue of its own, not on a cooperative thread.
        let answer: Result<MonitorServer.NetworkReading?, any Error> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: Result { try chain() }) }
        }
        switch answer {
        case .success(.chain(let node, let expected)?):
            body["chain_id"] = node
            if node == expected {
                body["chain"] = "ok"
            } else {
                healthy = false
                body["chain"] = "the node serves chain \(node), not \(expected)"
            }
        case .success(.relay(let time)?):
            body["relay"] = "ok"
            body["relay_time"] = time
        case .success(nil):
            healthy = false
            body[networkName] = "not connected yet"
        case .failure(let error):
            healthy = false
            body[networkName] = "\(error)"
        }
        body["status"] = healthy ? "ok" : "unhealthy"
        let data = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])) ?? Data("{}".utf8)
        return (healthy, String(decoding: data, as: UTF8.self) + "\n")
    }
}
