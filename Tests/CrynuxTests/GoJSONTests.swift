import Ethereum
import Testing
import StrictJSON

@testable import Crynux

@Suite struct GoJSONTests {
    private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    // The three vectors of protocol §2.5: keccak256(Go bytes ‖ "1700000000").
    @Test func protocolVectors() {
        let ts = Array("1700000000".utf8)

        let image = GoJSON.object([("image_num", .string("0")), ("task_id", .uint(42))])
        #expect(text(image) == #"{"image_num":"0","task_id":42}"#)
        #expect(keccak256(image + ts).hex == "0x4ba6a26c06c8520a7ff2562462984dfe3b480a9ada737ed80b1246a7d86acdf7")

        let task = GoJSON.object([("task_id", .uint(42))])
        #expect(text(task) == #"{"task_id":42}"#)
        #expect(keccak256(task + ts).hex == "0x5b66ce7ed90590b05b2dc2c5e0696b8e1c7e4ce2b7516bc496883f516bd5f9df")

        let upload = GoJSON.object([("task_args", .string(#"{"a":"x < y & z"}"#)), ("task_id", .uint(42))])
        #expect(text(upload) == #"{"task_args":"{\"a\":\"x \u003c y \u0026 z\"}","task_id":42}"#)
        #expect(keccak256(upload + ts).hex == "0xece3a0d8447b38decb07ae225be518c202a795d4a8b350860fcf9cc9c747840c")
    }

    @Test(arguments: [
        ("", #""""#),
        ("plain ascii 123", #""plain ascii 123""#),
        ("quote \" backslash \\", #""quote \" backslash \\""#),
        ("a\nb\rc\td", #""a\nb\rc\td""#),
        ("\u{08}\u{0C}", #""\u0008\u000c""#),
        ("\u{00}\u{01}\u{1F}", #""\u0000\u0001\u001f""#),
        ("<>&", #""\u003c\u003e\u0026""#),
        ("\u{2028}x\u{2029}", #""\u2028x\u2029""#),
        ("a/b</script>", #""a/b\u003c/script\u003e""#),
        ("é 猫 😀 \u{7F} \u{FFFD} \u{2027} \u{202A}", "\"é 猫 😀 \u{7F} \u{FFFD} \u{2027} \u{202A}\""),
        ("'single'", #""'single'""#),
    ])
    func quoting(_ input: String, _ expected: String) {
        #expect(GoJSON.quote(input) == expected)
    }

    @Test func objectWithOtherValueKinds() {
        let bytes = GoJSON.object([("a", .int(-5)), ("b", .bool(true)), ("c", .null), ("d", .uint(UInt64.max))])
        #expect(text(bytes) == #"{"a":-5,"b":true,"c":null,"d":18446744073709551615}"#)
        #expect(text(GoJSON.object([])) == "{}")
    }

    @Test func quotedTaskArgumentsRoundTripThroughAJSONParser() throws {
        let args = #"{"prompt":"<&> \u2028 \"q\" / é 😀","n":[1,2.5e3]}"#
        let quoted = GoJSON.quote(args)
        #expect(try JSON.parse(quoted) == .string(args))
    }
}

@Test func quotedLengthMatchesQuote() {
    for s in ["", "abc", "<&>\"\\\n\r\t\u{01}\u{2028}é😀/", String(repeating: "\u{2029}<", count: 10)] {
        #expect(GoJSON.quotedLength(s) == GoJSON.quote(s).utf8.count, "\(s)")
    }
}
