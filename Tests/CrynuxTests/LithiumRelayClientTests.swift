import BigInt
import Ethereum
import Foundation
import StrictJSON
import Testing

@testable import Crynux

/// Offline checks of the Lithium client's signed bytes and its strict reading of task JSON.
@Suite struct LithiumRelayClientTests {
    static let commitment = [UInt8](repeating: 0xab, count: 32)
    static let nonce = [UInt8](repeating: 0x01, count: 32)

    @Test func createPayloadIsTheRelaysReMarshal() {
        let request = LithiumTaskRequest(
            commitment: Self.commitment, taskArgs: #"{"prompt":"<a> & b"}"#, taskType: .sd, nonce: Self.nonce,
            modelIds: ["base:crynux-network/sdxl-turbo+fp16", "lora:x"], minVram: 14, taskVersion: "3.1.0", taskSize: 1,
            taskFee: BigUInt(2) * BigUInt(10).power(18))
        let expected = #"{"min_vram":14,"nonce":"0x"# + String(repeating: "01", count: 32)
            + #"","required_gpu":"","required_gpu_vram":0,"task_args":"{\"prompt\":\"\u003ca\u003e \u0026 b\"}","#
            + #""task_fee":"2000000000000000000","task_id_commitment":"0x"# + String(repeating: "ab", count: 32)
            + #"","task_model_ids":["base:crynux-network/sdxl-turbo+fp16","lora:x"],"task_size":1,"task_type":0,"task_version":"3.1.0"}"#
        #expect(String(decoding: LithiumRelayClient.createPayload(request), as: UTF8.self) == expected)
    }

    @Test func goWritesLargeIntegersAsFloat64() {
        #expect(GoJSON.float64Integer(0) == "0")
        #expect(GoJSON.float64Integer(1 << 53) == "9007199254740992")
        #expect(GoJSON.float64Integer((1 << 53) + 1) == "9007199254740992")
        #expect(GoJSON.float64Integer((1 << 53) + 2) == "9007199254740994")
        #expect(GoJSON.float64Integer(1 << 60) == "1152921504606847000")
        #expect(GoJSON.float64Integer(.max) == "18446744073709552000")
        #expect(String(decoding: GoJSON.object([("a", .array([.string("\u{8}"), .uint(1)]))], go122: true), as: UTF8.self) == #"{"a":["\b",1]}"#)
        #expect(String(decoding: GoJSON.object([("a", .string("\u{c}"))]), as: UTF8.self) == #"{"a":"\u000c"}"#)
    }

    @Test func goTimes() {
        #expect(LithiumRelayClient.parseGoTime("1970-01-01T00:00:10Z") == Date(timeIntervalSince1970: 10))
        #expect(LithiumRelayClient.parseGoTime("2026-08-20T10:11:12.5+02:00") == Date(timeIntervalSince1970: 1_787_213_472.5))
        let nano = LithiumRelayClient.parseGoTime("2026-08-20T08:11:12.123456789Z")
        #expect(nano.map { abs($0.timeIntervalSince1970 - 1_787_213_472.123456789) < 1e-5 } == true)
        for bad in ["", "2026-08-20", "2026-08-20T08:11:12", "2026-13-20T08:11:12Z", "2026-08-20T08:11:12.Z",
                    "2026-08-20T08:11:12.1234567891Z", "2026-08-20T08:11:12+0200", "2026-08-20T08:11:12Zx"] {
            #expect(LithiumRelayClient.parseGoTime(bad) == nil, "\(bad)")
        }
    }

    static let creator = "0x33C53d218bd5da08B3423DcA88CbF43c297bDb39"

    static func taskJSON(_ overrides: [String: String] = [:], drop: String? = nil) -> String {
        var fields: [(String, String)] = [
            ("sequence", "42"), ("task_args", #""{}""#), ("task_id_commitment", "\"0x\(String(repeating: "ab", count: 32))\""),
            ("creator", "\"\(creator)\""), ("sampling_seed", "\"0x\(String(repeating: "cd", count: 32))\""),
            ("nonce", "\"0x01\""), ("status", "4"), ("task_type", "0"), ("task_version", "\"3.1.0\""), ("timeout", "120"),
            ("min_vram", "8"), ("required_gpu", "\"\""), ("required_gpu_vram", "0"), ("task_fee", "\"3000000000000000000\""),
            ("task_size", "2"), ("model_ids", "[]"), ("abort_reason", "0"), ("task_error", "0"), ("score", "\"0x0102\""),
            ("qos_score", "0"), ("selected_node", "\"0x07194E82E1638dA272F84BEb33E355b764fb5682\""),
            ("create_time", "\"2026-08-20T08:11:12.123Z\""),
        ]
        fields = fields.filter { $0.0 != drop }.map { (k, v) in (k, overrides[k] ?? v) }
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    @Test func parsesATask() throws {
        let task = try LithiumRelayClient.parseTask(try JSON.parse(Self.taskJSON()))
        #expect(task.sequence == 42 && task.status == .scoreReady && task.timeout == 120 && task.taskSize == 2)
        #expect(task.commitment == Self.commitment && task.samplingSeed == [UInt8](repeating: 0xcd, count: 32))
        #expect(task.creator == Address(hex: Self.creator))
        #expect(task.selectedNode == Address(hex: "0x07194E82E1638dA272F84BEb33E355b764fb5682"))
        #expect(task.taskFee == BigUInt(3) * BigUInt(10).power(18))
        #expect(task.score == "0x0102" && task.createTime != nil && task.startTime == nil)
        let queued = try LithiumRelayClient.parseTask(try JSON.parse(Self.taskJSON(["selected_node": "\"\"", "status": "0"])))
        #expect(queued.selectedNode == nil && queued.status == .queued)
    }

    @Test func malformedTasksThrow() throws {
        let bad: [([String: String], String?)] = [
            ([:], "sampling_seed"), ([:], "sequence"), ([:], "status"), ([:], "task_fee"), ([:], "selected_node"),
            (["status": "12"], nil), (["abort_reason": "11"], nil), (["status": "-1"], nil), (["status": "4.5"], nil),
            (["sequence": "1e3"], nil), (["sequence": "18446744073709551616"], nil), (["task_fee": "3"], nil),
            (["task_fee": "\"-3\""], nil), (["task_fee": "\"0x10\""], nil), (["sampling_seed": "\"0xcd\""], nil),
            (["sampling_seed": "\"\(String(repeating: "cd", count: 32))\""], nil), (["creator": "\"0x33c53D218bd5da08B3423DcA88CbF43c297bDb39\""], nil),
            (["selected_node": "\"node\""], nil), (["create_time": "\"yesterday\""], nil), (["create_time": "5"], nil),
            (["task_error": "256"], nil), (["score": "null"], nil),
        ]
        for (overrides, drop) in bad {
            let text = Self.taskJSON(overrides, drop: drop)
            #expect(throws: RelayError.self, "\(text)") { _ = try LithiumRelayClient.parseTask(try JSON.parse(text)) }
        }
        #expect(throws: RelayError.self) { _ = try LithiumRelayClient.parseTask(.array([])) }
    }

    @Test func formEncoding() {
        let body = LithiumRelayClient.formEncode([("task_args", #"{"a":"b c+&=ü"}"#), ("task_model_ids", "x"), ("task_model_ids", "y")])
        #expect(String(decoding: body, as: UTF8.self) == "task_args=%7B%22a%22%3A%22b%20c%2B%26%3D%C3%BC%22%7D&task_model_ids=x&task_model_ids=y")
    }
}
