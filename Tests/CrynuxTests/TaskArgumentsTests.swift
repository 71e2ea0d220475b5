import Ethereum
import Testing

@testable import Crynux

struct InvalidCase: Sendable, CustomTestStringConvertible {
    let kind: TaskKind
    let arguments: String
    let field: String
    /// A fragment the message must contain (what was found, or what was expected).
    let mentions: String
    /// The SD schema the case is checked under.
    let schema: SDSchema
    var testDescription: String { "\(kind.rawValue) @\(schema.rawValue) \(field): \(arguments)" }

    init(_ kind: TaskKind, _ arguments: String, _ field: String, _ mentions: String, schema: SDSchema = .v68b52d2) {
        self.kind = kind
        self.arguments = arguments
        self.field = field
        self.mentions = mentions
        self.schema = schema
    }
}

private func sd(_ taskConfig: String, extra: String = "") -> String {
    #"{"base_model":"crynux-ai/stable-diffusion-v1-5","prompt":"a cat","task_config":"# + taskConfig + extra + "}"
}

private func gpt(_ messages: String = #"[{"role":"user","content":"hi"}]"#, extra: String = "") -> String {
    #"{"model":"Qwen/Qwen2.5-7B-Instruct","messages":"# + messages + extra + "}"
}

private let invalidCases: [InvalidCase] = [
    // The document as a whole
    .init(.sd, "", "task_args", "valid JSON"),
    .init(.sd, "[]", "task_args", "got an empty array"),
    .init(.gpt, #""just a string""#, "task_args", "JSON object"),
    .init(.sd, #"{"base_model":"m","prompt":"p","task_config":{},}"#, "task_args", "line 1, column 49"),
    .init(.sd, #"{"base_model":"m","prompt":"p","task_config":{"seed":NaN}}"#, "task_args", "valid JSON"),
    .init(.sd, #"{"base_model":"m","prompt":"p","task_config":{"seed":01}}"#, "task_args", "leading zeros"),
    .init(.sd, #"{"base_model":"m","prompt":"p","task_config":{"seed":1e400}}"#, "task_args", "out of range"),
    .init(.sd, #"{"base_model":'m'}"#, "task_args", "'''"),
    .init(.sd, "{\"base_model\":\"m\",\"prompt\":\"p\nq\",\"task_config\":{}}", "task_args", "control character"),
    .init(.sd, #"{"base_model":"m","prompt":"p","task_config":{}} {}"#, "task_args", "after the end"),
    .init(.sd, "\u{FEFF}{}", "task_args", "U+FEFF"),
    .init(.gpt, #"{"model":"m" // comment"#, "task_args", "valid JSON"),
    .init(.sd, #"{"base_model":"m","prompt":"\x","task_config":{}}"#, "task_args", "backslash followed by 'x'"),
    .init(.sd, #"{"base_model":"m","prompt":"\u12G4","task_config":{}}"#, "task_args", "invalid \\u escape"),
    .init(.sd, #"{"base_model":"m","prompt":"p","task_config":{"seed":1.}}"#, "task_args", "after '.'"),
    .init(.sd, #"{"base_model":"m","prompt":"p","task_config":{"seed":-}}"#, "task_args", "expected a digit"),
    .init(.sd, #"{"base_model":"m","prompt":"p","task_config":{"seed":tru}}"#, "task_args", "'true'"),
    .init(.sd, "{\"base_model\":\"m\",\n\"prompt\":\"p\",\n\"task_config\":{\"seed\":1,,}}", "task_args", "line 3, column 25"),
    .init(.sd, #"{"base_model":"m","prompt":"p","task_config":{"#, "task_args", "end of input"),

    // Stable Diffusion
    .init(.sd, #"{"prompt":"p","task_config":{}}"#, "base_model", "is missing"),
    .init(.sd, #"{"base_model":"","prompt":"p","task_config":{}}"#, "base_model", #"got """#),
    .init(.sd, #"{"base_model":7,"prompt":"p","task_config":{}}"#, "base_model", "got 7"),
    .init(.sd, #"{"base_model":{"variant":"fp16"},"prompt":"p","task_config":{}}"#, "base_model.name", "is missing", schema: .v8fcf6e7),
    .init(.sd, #"{"base_model":{"name":"m","variant":3},"prompt":"p","task_config":{}}"#, "base_model.variant", "got 3", schema: .v8fcf6e7),
    .init(.sd, #"{"base_model":"m","task_config":{}}"#, "prompt", "is missing"),
    .init(.sd, #"{"base_model":"m","prompt":"","task_config":{}}"#, "prompt", "non-empty string"),
    .init(.sd, #"{"base_model":"m","prompt":["p"],"task_config":{}}"#, "prompt", "got an array"),
    .init(.sd, #"{"base_model":"m","prompt":"p"}"#, "task_config", "is missing"),
    .init(.sd, #"{"base_model":"m","prompt":"p","task_config":[]}"#, "task_config", "must be an object"),
    .init(.sd, sd(#"{"num_images":12}"#), "task_config.num_images", "from 1 to 10 (got 12)"),
    .init(.sd, sd(#"{"num_images":0}"#), "task_config.num_images", "got 0"),
    .init(.sd, sd(#"{"num_images":true}"#), "task_config.num_images", "got true"),
    .init(.sd, sd(#"{"num_images":1.5}"#), "task_config.num_images", "got 1.5"),
    .init(.sd, sd(#"{"num_images":"3"}"#), "task_config.num_images", #"got "3""#),
    .init(.sd, sd(#"{"num_images":null}"#), "task_config.num_images", "got null"),
    .init(.sd, sd(#"{"steps":101}"#), "task_config.steps", "from 1 to 100"),
    .init(.sd, sd(#"{"seed":-1}"#), "task_config.seed", "got -1"),
    .init(.sd, sd(#"{"seed":2147483648}"#), "task_config.seed", "2147483647"),
    .init(.sd, sd(#"{"cfg":21}"#), "task_config.cfg", "from 0 to 20", schema: .v8fcf6e7),
    .init(.sd, sd(#"{"cfg":7.5}"#), "task_config.cfg", "integer"),
    .init(.sd, sd(#"{"cfg":false}"#), "task_config.cfg", "got false"),
    .init(.sd, sd(#"{"image_width":500}"#), "task_config.image_width", "multiple of 8"),
    .init(.sd, sd(#"{"image_height":0}"#), "task_config.image_height", "got 0"),
    .init(.sd, sd(#"{"safety_checker":1}"#), "task_config.safety_checker", "true or false (got 1)"),
    .init(.sd, sd("{}", extra: #","version":"3.0.0""#), "version", #""2.1.0" (got "3.0.0")"#, schema: .v8fcf6e7),
    .init(.sd, sd("{}", extra: #","version":"2.5.0""#), "version", #"got "2.5.0""#, schema: .v8fcf6e7),
    .init(.sd, sd("{}", extra: #","negative_prompt":null"#), "negative_prompt", "got null"),
    .init(.sd, sd("{}", extra: #","scheduler":{"method":"PNDMScheduler"}"#), "scheduler.method", "LCMScheduler", schema: .v8fcf6e7),
    .init(.sd, sd("{}", extra: #","scheduler":{}"#), "scheduler.method", "is missing", schema: .v8fcf6e7),
    .init(.sd, sd("{}", extra: #","scheduler":"LCMScheduler""#), "scheduler", "must be an object", schema: .v8fcf6e7),
    .init(.sd, sd("{}", extra: #","lora":{"weight":50}"#), "lora.model", "is missing"),
    .init(.sd, sd("{}", extra: #","lora":{"model":"m","weight":0}"#), "lora.weight", "from 1 to 100"),
    .init(.sd, sd("{}", extra: #","controlnet":{"model":"m","image_dataurl":"data:,","preprocess":{"method":"x"}}"#),
          "controlnet.preprocess.method", #"got "x""#),
    .init(.sd, sd("{}", extra: #","controlnet":{"model":"m"}"#), "controlnet.image_dataurl", "is missing"),
    .init(.sd, sd("{}", extra: #","refiner":{"model":"m","variant":null}"#), "refiner.variant", "got null", schema: .v8fcf6e7),
    .init(.sd, sd("{}", extra: #","refiner":{"model":"m","steps":0}"#), "refiner.steps", "got 0"),
    .init(.sd, sd("{}", extra: #","vae":1"#), "vae", "must be a string"),

    // What the era-D Relay's schema (stable-diffusion-task@68b52d2) refuses or its nodes ignore
    .init(.sd, #"{"base_model":{"name":"m"},"prompt":"p","task_config":{}}"#, "base_model", "no object form"),
    .init(.sd, sd("{}", extra: #","version":"2.0.0""#), "version", "not part of the network's schema (stable-diffusion-task@68b52d2)"),
    .init(.sd, sd("{}", extra: #","unet":"u""#), "unet", "@68b52d2"),
    .init(.sd, sd("{}", extra: #","scheduler":{"method":"LCMScheduler"}"#), "scheduler", "its nodes would ignore it"),
    .init(.sd, sd("{}", extra: #","lora":{"model":"m","weight_file_name":"w.safetensors"}"#), "lora.weight_file_name", "@68b52d2"),
    .init(.sd, sd("{}", extra: #","refiner":{"model":"m","variant":"fp16"}"#), "refiner.variant", "@68b52d2"),
    .init(.sd, sd(#"{"cfg":0}"#), "task_config.cfg", "from 1 to 20 (got 0)"),

    // GPT
    .init(.gpt, #"{"messages":[{"role":"user","content":"hi"}]}"#, "model", "is missing"),
    .init(.gpt, #"{"model":"","messages":[{"role":"user","content":"hi"}]}"#, "model", "non-empty"),
    .init(.gpt, #"{"model":"m"}"#, "messages", "is missing"),
    .init(.gpt, gpt("[]"), "messages", "got an empty array"),
    .init(.gpt, gpt(#"{"role":"user","content":"hi"}"#), "messages", "got an object"),
    .init(.gpt, gpt(#"[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"bot","content":"c"}]"#),
          "messages[2].role", #"got "bot""#),
    .init(.gpt, gpt(#"[{"role":"user"}]"#), "messages[0].content", "is missing"),
    .init(.gpt, gpt(#"[{"role":"user","content":null}]"#), "messages[0].content", "got null"),
    .init(.gpt, gpt(#"[{"role":"user","content":"a"},"hello"]"#), "messages[1]", "must be an object"),
    .init(.gpt, gpt(extra: #","generation_config":{"temperature":"hot"}"#), "generation_config.temperature", #"got "hot""#),
    .init(.gpt, gpt(extra: #","generation_config":{"do_sample":1}"#), "generation_config.do_sample", "got 1"),
    .init(.gpt, gpt(extra: #","generation_config":{"max_new_tokens":0}"#), "generation_config.max_new_tokens", "got 0"),
    .init(.gpt, gpt(extra: #","generation_config":{"max_new_tokens":true}"#), "generation_config.max_new_tokens", "got true"),
    .init(.gpt, gpt(extra: #","generation_config":{"top_p":1.5}"#), "generation_config.top_p", "from 0 to 1"),
    .init(.gpt, gpt(extra: #","generation_config":{"top_k":2.5}"#), "generation_config.top_k", "got 2.5"),
    .init(.gpt, gpt(extra: #","generation_config":{"num_return_sequences":2}"#),
          "generation_config.num_return_sequences", "do_sample"),
    .init(.gpt, gpt(extra: #","generation_config":{"do_sample":true,"temperature":0}"#),
          "generation_config.temperature", "greater than 0"),
    .init(.gpt, gpt(extra: #","generation_config":[]"#), "generation_config", "an object or null"),
    .init(.gpt, gpt(extra: #","dtype":"int8""#), "dtype", #"got "int8""#),
    .init(.gpt, gpt(extra: #","quantize_bits":5"#), "quantize_bits", "4 or 8"),
    .init(.gpt, gpt(extra: #","quantize_bits":"8""#), "quantize_bits", #"got "8""#),
    .init(.gpt, gpt(extra: #","seed":-3"#), "seed", "got -3"),
    .init(.gpt, gpt(extra: #","seed":4294967296"#), "seed", "4294967295"),
]

@Suite struct TaskArgumentsTests {
    @Test(arguments: invalidCases)
    func invalidArgumentsNameTheField(_ c: InvalidCase) {
        do {
            let task = try TaskArguments.validate(kind: c.kind, arguments: c.arguments, sdSchema: c.schema)
            Issue.record("accepted invalid arguments: \(task)")
        } catch {
            #expect(error.field == c.field)
            #expect(error.description.hasPrefix(c.field + ": "))
            #expect(error.description.contains(c.mentions), "\(error.description)")
            #expect(!error.description.contains("\n"))
        }
    }

    @Test func distinctInvalidFieldsAreCovered() {
        #expect(Set(invalidCases.map(\.field)).count >= 15)
    }

    @Test func errorSentenceReadsWell() {
        #expect(throws: TaskArgumentsError(field: "task_config.num_images",
                                           message: "must be an integer from 1 to 10 (got 12)")) {
            try TaskArguments.validate(kind: .sd, arguments: sd(#"{"num_images":12}"#), sdSchema: .eraDDefault)
        }
        let e = TaskArgumentsError(field: "messages[2].role", message: "x")
        #expect(e.description == "messages[2].role: x")
    }

    @Test func stableDiffusionV1Shape() throws {
        let args = #"""
        {"base_model": "crynux-ai/stable-diffusion-v1-5", "prompt": "a <b>cat</b> & \"dog\", 猫 🐱 — naïve",
         "negative_prompt": "", "task_config": {"num_images": 2, "image_width": 512, "image_height": 768,
         "steps": 25, "seed": 42, "safety_checker": false, "cfg": 7}, "lora": null}
        """#
        let task = try TaskArguments.validate(kind: .sd, arguments: args, sdSchema: .eraDDefault)
        #expect(task.kind == .sd)
        #expect(task.taskType == 0)
        #expect(task.cap == 2)
        #expect(task.resultCount == 2)
        #expect(task.vramLimit == 8)
        #expect(task.taskHash == keccak256(Array(args.utf8)))

        let parsed = try StableDiffusionArguments(parsing: args)
        #expect(parsed.prompt == "a <b>cat</b> & \"dog\", 猫 🐱 — naïve")
        #expect(parsed.baseModel == .init(name: "crynux-ai/stable-diffusion-v1-5", variant: nil))
        #expect(parsed.taskConfig.imageHeight == 768)
        #expect(parsed.taskConfig.steps == 25)
        #expect(parsed.taskConfig.cfg == 7)
        #expect(parsed.taskConfig.safetyChecker == false)
        #expect(parsed.version == nil)
        #expect(parsed.lora == nil)
    }

    @Test func stableDiffusionV2Shape() throws {
        let args = #"""
        {"version":"2.0.0","base_model":{"name":"crynux-ai/sdxl-turbo","variant":"fp16"},
         "prompt":"Self-portrait oil painting, a beautiful cyborg with golden hair, 8k","negative_prompt":"",
         "scheduler":{"method":"EulerAncestralDiscreteScheduler","args":{"timestep_spacing":"trailing"}},
         "lora":{"model":"some/lora","weight":80},
         "controlnet":{"model":"some/controlnet","image_dataurl":"data:image/png;base64,AAAA","preprocess":{"method":"canny","args":{"low_threshold":90}}},
         "refiner":{"model":"some/refiner"},
         "task_config":{"num_images":1,"seed":2147483647,"steps":1,"cfg":0}}
        """#
        let task = try TaskArguments.validate(kind: .sd, arguments: args, sdSchema: .v8fcf6e7)
        #expect(task.cap == 1)
        #expect(task.vramLimit == 14)
        #expect(task.resultCount == 1)
        // The era-D Relay's schema has no object base_model: refused before any money moves.
        #expect(throws: TaskArgumentsError.self) { try TaskArguments.validate(kind: .sd, arguments: args, sdSchema: .v68b52d2) }

        let parsed = try StableDiffusionArguments(parsing: args, schema: .v8fcf6e7)
        #expect(parsed.version == "2.0.0")
        #expect(parsed.baseModel == .init(name: "crynux-ai/sdxl-turbo", variant: "fp16"))
        #expect(parsed.scheduler == .eulerAncestralDiscrete)
        #expect(parsed.lora == .init(model: "some/lora", weightFileName: "", weight: 80))
        #expect(parsed.controlnet == .init(model: "some/controlnet", imageDataURL: "data:image/png;base64,AAAA", weight: 70,
                                           preprocessMethod: "canny"))
        #expect(parsed.refiner == .init(model: "some/refiner", variant: "fp16", denoisingCutoff: 80, steps: 20))
        #expect(parsed.taskConfig.seed == 2_147_483_647)
    }

    @Test func stableDiffusionDefaults() throws {
        let args = #"{"base_model":"someone/custom-model","prompt":"p","task_config":{}}"#
        let task = try TaskArguments.validate(kind: .sd, arguments: args, sdSchema: .eraDDefault)
        #expect(task.cap == 6)
        #expect(task.resultCount == 6)
        #expect(task.vramLimit == 10)

        let c = try StableDiffusionArguments(parsing: args).taskConfig
        #expect(c.numImages == 6)
        #expect(c.imageWidth == 512 && c.imageHeight == 512)
        #expect(c.steps == nil)
        #expect(c.seed == 0)
        #expect(c.safetyChecker == true)
        #expect(c.cfg == 5)

        let sdxlBase = #"{"base_model":{"name":"crynux-ai/stable-diffusion-xl-base-1.0"},"prompt":"p","task_config":{}}"#
        #expect(try TaskArguments.validate(kind: .sd, arguments: sdxlBase, sdSchema: .v8fcf6e7).vramLimit == 14)
    }

    @Test func integralFloatsCountAsIntegersButBooleansNever() throws {
        #expect(try TaskArguments.validate(kind: .sd, arguments: sd(#"{"num_images":4.0}"#), sdSchema: .eraDDefault).cap == 4)
        #expect(try TaskArguments.validate(kind: .sd, arguments: sd(#"{"num_images":3e0}"#), sdSchema: .eraDDefault).cap == 3)
        #expect(throws: TaskArgumentsError.self) {
            try TaskArguments.validate(kind: .sd, arguments: sd(#"{"num_images":false}"#), sdSchema: .eraDDefault)
        }
    }

    @Test func unknownKeysAreAllowed() throws {
        let args = #"{"base_model":"m","prompt":"p","task_config":{"num_images":1,"future":true},"extra":{"x":[1,{"y":null}]}}"#
        #expect(try TaskArguments.validate(kind: .sd, arguments: args, sdSchema: .eraDDefault).cap == 1)
        let g = #"{"model":"m","messages":[{"role":"user","content":"","name":"bob"}],"tools":null}"#
        #expect(try TaskArguments.validate(kind: .gpt, arguments: g, sdSchema: .eraDDefault).cap == 1)
    }

    @Test func gptExample() throws {
        let args = #"""
        {"model":"Qwen/Qwen2.5-7B-Instruct","messages":[
          {"role":"system","content":"Answer <briefly> & kindly."},
          {"role":"user","content":"Привет 👋\u2028what is 2 > 1?\n"},
          {"role":"assistant","content":"Yes."},
          {"role":"user","content":"\ud83d\ude00 and a lone \udc00"}],
         "generation_config":{"max_new_tokens":256,"do_sample":true,"temperature":0.7,"top_p":0.9,"top_k":50,
           "repetition_penalty":1.1,"typical_p":1,"num_beams":1,"num_return_sequences":2},
         "seed":4294967295,"dtype":"bfloat16","quantize_bits":null}
        """#
        let task = try TaskArguments.validate(kind: .gpt, arguments: args, sdSchema: .eraDDefault)
        #expect(task.kind == .gpt)
        #expect(task.taskType == 1)
        #expect(task.cap == 1)
        #expect(task.resultCount == 1)
        #expect(task.vramLimit == 8)
        #expect(task.taskHash == keccak256(Array(args.utf8)))

        let parsed = try GPTArguments(parsing: args)
        #expect(parsed.messages.count == 4)
        #expect(parsed.messages[0] == .init(role: .system, content: "Answer <briefly> & kindly."))
        #expect(parsed.messages[1].content == "Привет 👋\u{2028}what is 2 > 1?\n")
        #expect(parsed.messages[3].content == "😀 and a lone \u{FFFD}")
        #expect(parsed.generationConfig?.temperature == 0.7)
        #expect(parsed.generationConfig?.numReturnSequences == 2)
        #expect(parsed.seed == 4_294_967_295)
        #expect(parsed.dtype == "bfloat16")
        #expect(parsed.quantizeBits == nil)
    }

    @Test func gptDefaults() throws {
        let parsed = try GPTArguments(parsing: gpt())
        #expect(parsed.generationConfig == nil)
        #expect(parsed.seed == 0)
        #expect(parsed.dtype == "auto")
        #expect(parsed.quantizeBits == nil)
        #expect(try GPTArguments(parsing: gpt(extra: #","quantize_bits":4"#)).quantizeBits == 4)
        #expect(try GPTArguments(parsing: gpt(extra: #","generation_config":null"#)).generationConfig == nil)
    }

    @Test func beamSearchMayReturnSeveralSequences() throws {
        let ok = gpt(extra: #","generation_config":{"num_beams":4,"num_return_sequences":4}"#)
        #expect(try GPTArguments(parsing: ok).generationConfig?.numBeams == 4)
        #expect(throws: TaskArgumentsError.self) {
            try GPTArguments(parsing: gpt(extra: #","generation_config":{"num_beams":2,"num_return_sequences":3}"#))
        }
    }

    @Test func taskHashIsOverTheExactBytes() throws {
        // Whitespace, key order and escapes are kept: the Relay hashes what it receives.
        let a = #"{"prompt":"p","base_model":"m","task_config":{"num_images":1}}"#
        let b = #"{ "base_model" : "m", "prompt" : "\u0070", "task_config" : { "num_images" : 1 } }"#
        let ta = try TaskArguments.validate(kind: .sd, arguments: a, sdSchema: .eraDDefault)
        let tb = try TaskArguments.validate(kind: .sd, arguments: b, sdSchema: .eraDDefault)
        #expect(ta.taskHash == keccak256(Array(a.utf8)))
        #expect(tb.taskHash == keccak256(Array(b.utf8)))
        #expect(ta.taskHash != tb.taskHash)
        #expect(ta.taskHash.count == 32)
        #expect(TaskArguments.taskHash("").hex == "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")
    }

    @Test func duplicateKeysKeepTheLastValueLikeGo() throws {
        let args = #"{"base_model":"m","prompt":"p","task_config":{"num_images":12,"num_images":3}}"#
        #expect(try TaskArguments.validate(kind: .sd, arguments: args, sdSchema: .eraDDefault).cap == 3)
    }

    @Test func deepNestingIsRefusedNotCrashing() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        let args = #"{"base_model":"m","prompt":"p","task_config":{},"x":"# + deep + "}"
        #expect(throws: TaskArgumentsError.self) { try TaskArguments.validate(kind: .sd, arguments: args, sdSchema: .eraDDefault) }
    }

    @Test func kindMapsToTaskType() {
        #expect(TaskKind.sd.taskType == 0)
        #expect(TaskKind.gpt.taskType == 1)
        #expect(TaskKind(taskType: 1) == .gpt)
        #expect(TaskKind(taskType: 2) == nil)
        #expect(TaskKind(rawValue: "sd") == .sd)
    }
}

@Test func argumentsBeyondTheRelaysBodyLimitAreRefused() {
    // 6 MiB of '<' is 36 MiB once escaped for the Relay.
    let prompt = String(repeating: "<", count: 6 << 20)
    let args = #"{"base_model":"m","prompt":""# + prompt + #"","task_config":{}}"#
    #expect(throws: TaskArgumentsError.self) { try TaskArguments.validate(kind: .sd, arguments: args, sdSchema: .eraDDefault) }
    do {
        _ = try TaskArguments.validate(kind: .sd, arguments: args, sdSchema: .eraDDefault)
    } catch {
        #expect(error.field == "task_args")
        #expect(error.message.contains("32 MiB"))
    }
}
