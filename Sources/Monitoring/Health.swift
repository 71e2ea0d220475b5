import Dispatch
import Foundation
import JobQueue

/// `/healthz`: the process answers, the database answers with this build's schema, and the node
/// serves the expected chain. 200 when all hold, 503 otherwise, with a JSON body saying which.
enum Health {
    static func check(database: DatabaseLane, chain: @escaping MonitorServer.ChainCheck) async -> (healthy: Bool, body: String) {
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
        let answer: Result<(node: UInt64, expected: UInt64)?, any Error> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: Result { try chain() }) }
        }
        switch answer {
        case .success(let ids?):
            body["chain_id"] = ids.node
            if ids.node == ids.expected {
                body["chain"] = "ok"
            } else {
                healthy = false
                body["chain"] = "the node serves chain \(ids.node), not \(ids.expected)"
            }
        case .success(nil):
            healthy = false
            body["chain"] = "not connected yet"
        case .failure(let error):
            healthy = false
            body["chain"] = "\(error)"
        }
        body["status"] = healthy ? "ok" : "unhealthy"
        let data = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])) ?? Data("{}".utf8)
        return (healthy, String(decoding: data, as: UTF8.self) + "\n")
    }
}
