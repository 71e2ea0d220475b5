import Ethereum
import Foundation
import Testing
import StrictJSON

@Suite struct JSONTests {
    @Test func parsesAndSerializes() throws {
        let text = #" { "b" : [1, -2.5, 3e2, true, false, null], "a": "x\"\\\/\n\u00e9\ud83d\ude80", "c": {} } "#
        let value = try JSON.parse(text)
        #expect(value["a"] == .string("x\"\\/\né🚀"))
        #expect(value["b"] == [1, -2.5, 300, true, false, nil])
        #expect(value["c"] == .object(JSONObject()))
        #expect(String(decoding: value.serialized(), as: UTF8.self)
            == #"{"b":[1,-2.5,3e2,true,false,null],"a":"x\"\\/\né🚀","c":{}}"#)
        #expect(try JSON.parse(bytes: value.serialized()) == value)
        #expect(String(decoding: JSON.string("\u{01}\t").serialized(), as: UTF8.self) == #""\u0001\t""#)
        #expect(JSON.int(1 << 40).intValue == 1 << 40)
        #expect(JSON.number(JSONNumber(0.5)).intValue == nil)
    }

    @Test func agreesWithFoundation() throws {
        let value: JSON = ["jsonrpc": "2.0", "id": 7, "method": "eth_call", "params": [["data": "0x"], "latest"],
                           "ratio": 0.125, "flag": false, "nothing": nil, "text": "<tag> & \"quote\" é"]
        let object = try JSONSerialization.jsonObject(with: Data(value.serialized())) as? NSDictionary
        let expected: NSDictionary = ["jsonrpc": "2.0", "id": 7, "method": "eth_call",
                                      "params": [["data": "0x"], "latest"], "ratio": 0.125, "flag": false,
                                      "nothing": NSNull(), "text": "<tag> & \"quote\" é"]
        #expect(object == expected)
    }

    @Test func rejectsInvalidJSON() throws {
        for bad in ["", "{", "[1,]", "{\"a\":1,}", "01", "1.", "-", "\"abc", "tru", "[1] 2", "{'a':1}",
                    "\"\\x\"", "\"a\u{01}\"", "nul"] {
            #expect(throws: JSONParseError.self, "\(bad)") { try JSON.parse(bad) }
        }
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONParseError.self) { try JSON.parse(deep) }
        #expect(throws: JSONParseError.self) { try JSON.parse(bytes: [0x22, 0xff, 0x22]) }
        // A lone surrogate escape decodes to U+FFFD, as Go's encoding/json (the relay) does.
        #expect(try JSON.parse("\"\\ud800\"") == .string("\u{FFFD}"))
    }
}
