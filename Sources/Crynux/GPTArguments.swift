/// The typed view of GPT task arguments (gpt-task inference schema), with the schema defaults applied.
/// Unknown keys are allowed and ignored, as in the schema.
public struct GPTArguments: Sendable, Equatable {
    public static let dtypes = ["float16", "bfloat16", "float32", "auto"]

    public enum Role: String, Sendable, CaseIterable {
        case system, user, assistant
    }

    public struct Message: Sendable, Equatable {
        public let role: Role
        public let content: String
    }

    /// Hugging Face `generate` options. Ranges are those `transformers` accepts (plus generous upper
    /// bounds), so that a task the nodes would reject with an error is refused before it is paid for.
    public struct GenerationConfig: Sendable, Equatable {
        public var maxNewTokens: Int?
        public var doSample: Bool?
        public var numBeams: Int?
        public var temperature: Double?
        public var typicalP: Double?
        public var topK: Int?
        public var topP: Double?
        public var repetitionPenalty: Double?
        public var numReturnSequences: Int?
    }

    public var model: String
    public var messages: [Message]
    public var generationConfig: GenerationConfig?
    public var seed: Int = 0
    public var dtype: String = "auto"
    public var quantizeBits: Int?

    /// GPU memory in GB (the bridge's rule for LLM tasks).
    public var vramLimit: UInt64 { 8 }

    public init(parsing arguments: String) throws(TaskArgumentsError) {
        try self.init(root: TaskArguments.parseRoot(arguments))
    }

    init(root r: FieldReader) throws(TaskArgumentsError) {
        model = try r.requiredString("model", nonEmpty: true)

        guard let list = r.object["messages"] else {
            throw r.missing("messages", expected: "a non-empty array of {\"role\", \"content\"} objects")
        }
        guard case .array(let items) = list, !items.isEmpty else {
            throw r.mismatch("messages", expected: "a non-empty array of {\"role\", \"content\"} objects", got: list)
        }
        var messages: [Message] = []
        for (i, item) in items.enumerated() {
            let m = try FieldReader(value: item, path: "messages[\(i)]")
            let role = try m.requiredOneOf("role", Role.allCases.map(\.rawValue))
            messages.append(Message(role: Role(rawValue: role)!, content: try m.requiredString("content")))
        }
        self.messages = messages

        if let g = try r.nested("generation_config", nullable: true) {
            generationConfig = try Self.generationConfig(g)
        }
        // The nodes seed numpy, which only takes seeds below 2^32.
        if let v = try r.integer("seed", in: 0...4_294_967_295) { seed = Int(v) }
        dtype = try r.oneOf("dtype", Self.dtypes) ?? "auto"
        if let bits = try r.integer("quantize_bits", in: 4...8, expected: "4 or 8", nullable: true) {
            guard bits == 4 || bits == 8 else {
                throw r.mismatch("quantize_bits", expected: "4 or 8, or null", got: r.object["quantize_bits"]!)
            }
            quantizeBits = Int(bits)
        }
    }

    private static func generationConfig(_ g: FieldReader) throws(TaskArgumentsError) -> GenerationConfig {
        var c = GenerationConfig()
        c.maxNewTokens = try g.integer("max_new_tokens", in: 1...65_536).map { Int($0) }
        c.doSample = try g.bool("do_sample")
        c.numBeams = try g.integer("num_beams", in: 1...64).map { Int($0) }
        c.temperature = try g.number("temperature", expected: "a number from 0 to 100") { (0...100).contains($0) }
        c.typicalP = try g.number("typical_p", expected: "a number greater than 0 and at most 1") { $0 > 0 && $0 <= 1 }
        c.topK = try g.integer("top_k", in: 0...Int64.max).map { Int($0) }
        c.topP = try g.number("top_p", expected: "a number from 0 to 1") { (0...1).contains($0) }
        c.repetitionPenalty = try g.number("repetition_penalty", expected: "a number greater than 0") { $0 > 0 }
        c.numReturnSequences = try g.integer("num_return_sequences", in: 1...64).map { Int($0) }

        // Combinations transformers refuses at generation time (the task would be paid for and then fail).
        if c.doSample == true, let t = c.temperature, t == 0 {
            throw g.fail("temperature", "must be greater than 0 when do_sample is true (got \(g.object["temperature"]!.brief))")
        }
        if let n = c.numReturnSequences, n > 1 {
            let beams = c.numBeams ?? 1
            if beams == 1 && c.doSample != true {
                throw g.fail("num_return_sequences",
                             "must be 1 unless do_sample is true or num_beams is greater than 1 (got \(n))")
            }
            if beams > 1 && n > beams {
                throw g.fail("num_return_sequences", "must not exceed num_beams, which is \(beams) (got \(n))")
            }
        }
        return c
    }
}
