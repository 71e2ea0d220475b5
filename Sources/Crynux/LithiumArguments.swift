import StrictJSON

// Task arguments on the live network ("Lithium", crynux-relay@24ffc26). The Relay checks `task_args`
// with santhosh-tekuri/jsonschema (draft 2020-12, as neither file names a draft) against
// stable-diffusion-task's schema on main (@4088ef8; the file last changed in @1c3cd8c) and gpt-task's
// at tag v3.1.0, and answers 400 for anything that fails; the rules below are those schemas', field
// by field. The Relay validates before it charges the Relay Account, but the job's money is committed
// on our side once a create request is built, so everything it would refuse is refused here first,
// with the field's path.
//
// Quirks of the schemas kept on purpose: integer-valued floats (`4.0`, `1e1`) pass "integer"; no
// object refuses unknown keys except GPT content blocks; "null" is accepted only where the schema
// says so (`lora`, `controlnet`, `refiner`, `preprocess`, most scheduler args), never for
// `scheduler`, `task_config`, `version`, the strings or `generation_config`'s members.
//
// Deliberately stricter than the Relay, because the nodes (stable-diffusion-task@4088ef8) would take
// the task and then fail it, after it is paid for:
// * a `scheduler` object without `method`: the schema's `oneOf` lets one form through (args that fit
//   the Euler set but break both a DPM-only and an LCM-only key), but the node's pydantic model picks
//   the scheduler by `Field(discriminator="method")` and refuses a missing tag
//   (sd_task/task_args/inference_task/task_args.py).
// * a `controlnet` without a non-empty `image_dataurl`: the schema's default is "", and the node
//   raises "Image and image_dataurl cannot be both empty" (sd_task/task_runner/inference_task/controlnet.py).
// * `image_width`/`image_height` that are not positive multiples of 8: the schema has no bounds, but
//   diffusers' pipelines raise "`height` and `width` have to be divisible by 8", and a size of 0 or
//   less makes no image.
// Numbers: the StrictJSON parser refuses `1e400` (Go's json.Unmarshal fails too: the Relay answers
// 500) and does not count values beyond ±2^53 as integers (Go's float64 would); nesting is capped
// at 200 levels. These are the only other differences.

// MARK: the create request's fields

/// What a Lithium create request carries besides the arguments themselves, derived from them as the
/// official client does (crynux-bridge@32a2af0 api/v1/inference_tasks/create_task.go and
/// models/task_args.go).
public struct LithiumTaskSpec: Sendable, Equatable {
    /// The task version the bridge sends for every type (`task.default_task_version`). The Relay needs
    /// three dot-separated unsigned decimals and matches nodes of the same major version whose
    /// (minor, patch) is at least this.
    public static let defaultTaskVersion = "3.1.0"
    /// The bridge's default for LLM tasks (create_task.go getDefaultMinVram).
    public static let llmMinVram: UInt64 = 24

    public let taskType: LithiumTaskType
    /// `base:<name>[+variant]`, then `lora:<model>` and `controlnet:<model>[+variant]` when present
    /// (SD); `["base:<model>"]` (LLM). Names as written: the Relay lowercases the ids itself
    /// (models.NormalizeModelIDs) after checking the signature over what was sent.
    public let modelIds: [String]
    /// GB of GPU memory a node needs.
    public let minVram: UInt64
    /// SD: `task_config.num_images` (6, the schema's default, when absent); LLM: 1.
    public let taskSize: UInt64
    public let taskVersion: String
    /// Result files to download: `taskSize`.
    public let resultCount: Int

    public init(taskType: LithiumTaskType, modelIds: [String], minVram: UInt64, taskSize: UInt64,
                taskVersion: String = LithiumTaskSpec.defaultTaskVersion, resultCount: Int) {
        self.taskType = taskType
        self.modelIds = modelIds
        self.minVram = minVram
        self.taskSize = taskSize
        self.taskVersion = taskVersion
        self.resultCount = resultCount
    }
}

extension TaskArguments {
    /// Validates `arguments` by the Lithium Relay's rules and derives the create request's fields.
    public static func lithiumSpec(kind: TaskKind, arguments: String) throws(TaskArgumentsError) -> LithiumTaskSpec {
        let root = try parseRoot(arguments)
        switch kind {
        case .sd:
            return try StableDiffusionArguments(root: root, schema: .lithium).lithiumSpec
        case .gpt:
            return try LithiumGPTArguments(root: root).lithiumSpec
        }
    }
}

extension StableDiffusionArguments {
    /// The bridge's rule (getDefaultMinVram): 8 for SD 1.5, 14 for sdxl-turbo, 10 for anything else.
    /// Compared without regard to case (the bridge compares as written): the Relay lowercases the name
    /// before a node sees it, so `Crynux-Network/SDXL-Turbo` runs sdxl-turbo and needs its 14 GB.
    public static func lithiumMinVram(baseModel name: String) -> UInt64 {
        switch name.lowercased() {
        case "crynux-network/stable-diffusion-v1-5": 8
        case "crynux-network/sdxl-turbo": 14
        default: 10
        }
    }

    /// The create fields (bridge models/task_args.go getSDTaskConfigModelIDs; refiner, VAE, UNet and
    /// textual inversion get no ids).
    public var lithiumSpec: LithiumTaskSpec {
        var ids = ["base:" + baseModel.name + (baseModel.variant.map { "+" + $0 } ?? "")]
        if let lora { ids.append("lora:" + lora.model) }
        if let controlnet { ids.append("controlnet:" + controlnet.model + (controlnet.variant.map { "+" + $0 } ?? "")) }
        let size = UInt64(taskConfig.numImages)
        return LithiumTaskSpec(taskType: .sd, modelIds: ids, minVram: Self.lithiumMinVram(baseModel: baseModel.name),
                               taskSize: size, resultCount: Int(size))
    }

    /// stable-diffusion-task@1c3cd8c's schema (see the top of this file).
    init(lithium r: FieldReader) throws(TaskArgumentsError) {
        version = try r.oneOf("version", Self.lithiumVersions)

        let expectedBase = #"a non-empty string or an object {"name": …, "variant": …}"#
        guard let base = r.object["base_model"] else { throw r.missing("base_model", expected: expectedBase) }
        switch base {
        case .string(let s) where !s.isEmpty:
            baseModel = BaseModel(name: s, variant: nil)
        case .object(let o):
            let b = FieldReader(o, path: r.fieldPath("base_model"))
            baseModel = BaseModel(name: try b.requiredString("name", nonEmpty: true),
                                  variant: try b.string("variant", nullable: true))
        default:
            throw r.mismatch("base_model", expected: expectedBase, got: base)
        }

        dtype = try r.oneOf("dtype", Self.dtypes)
        unet = try r.string("unet") ?? ""
        prompt = try r.requiredString("prompt", nonEmpty: true)
        negativePrompt = try r.string("negative_prompt") ?? ""

        guard r.object["task_config"] != nil else {
            throw r.missing("task_config", expected: "an object such as {\"num_images\": 1}")
        }
        taskConfig = try Self.lithiumTaskConfig(r.nested("task_config")!)

        if let l = try r.nested("lora", nullable: true) {
            lora = Lora(model: try l.requiredString("model", nonEmpty: true),
                        weightFileName: try l.string("weight_file_name") ?? "",
                        weight: Int(try l.integer("weight", in: 1...100) ?? 100))
        }

        if let c = try r.nested("controlnet", nullable: true) {
            let model = try c.requiredString("model", nonEmpty: true)
            let variant = try c.string("variant", nullable: true)
            // Stricter than the schema (optional, "" allowed): the node cannot run without an image.
            guard c.object["image_dataurl"] != nil else {
                throw c.missing("image_dataurl", expected: "a non-empty data URL of the control image: the nodes fail a ControlNet task without one")
            }
            let image = try c.string("image_dataurl")!
            guard !image.isEmpty else {
                throw c.fail("image_dataurl", "must be a non-empty data URL of the control image: the nodes fail a ControlNet task without one (got \"\")")
            }
            let weight = Int(try c.integer("weight", in: 1...100) ?? 70)
            var method: String?
            if let p = try c.nested("preprocess", nullable: true) {
                let m = try p.requiredOneOf("method", ControlNet.preprocessMethods)
                try Self.checkPreprocessArgs(p, method: m)
                method = m
            }
            controlnet = ControlNet(model: model, imageDataURL: image, weight: weight, preprocessMethod: method,
                                    variant: variant)
        }

        if r.object["scheduler"] != nil {
            scheduler = try Self.lithiumScheduler(r.nested("scheduler")!)
        }

        vae = try r.string("vae") ?? ""

        if let f = try r.nested("refiner", nullable: true) {
            refiner = Refiner(model: try f.requiredString("model", nonEmpty: true),
                              variant: try f.string("variant", nullable: true),
                              denoisingCutoff: Int(try f.integer("denoising_cutoff", in: 1...100) ?? 80),
                              steps: Int(try f.integer("steps", in: 1...100) ?? 20))
        }

        textualInversion = try r.string("textual_inversion") ?? ""
    }

    private static func lithiumTaskConfig(_ t: FieldReader) throws(TaskArgumentsError) -> TaskConfig {
        var config = TaskConfig()
        for key in ["image_width", "image_height"] {
            // Stricter than the schema (any integer): see the top of this file.
            let expected = "a positive multiple of 8 (the nodes' pipelines refuse other sizes)"
            guard let v = try t.integer(key, in: Int64.min...Int64.max, expected: expected) else { continue }
            guard v > 0, v % 8 == 0 else { throw t.mismatch(key, expected: expected, got: t.object[key]!) }
            if key == "image_width" { config.imageWidth = Int(v) } else { config.imageHeight = Int(v) }
        }
        if let v = try t.integer("steps", in: 1...100) { config.steps = Int(v) }
        if let v = try t.integer("seed", in: 0...2_147_483_647) { config.seed = Int(v) }
        if let v = try t.integer("num_images", in: 1...10) { config.numImages = Int(v) }
        if let v = try t.bool("safety_checker") { config.safetyChecker = v }
        if let v = try t.number("cfg", expected: "a number from 0 to 20", { (0...20).contains($0) }) { config.cfg = v }
        return config
    }

    // MARK: scheduler

    /// Common to the three schedulers (the schema's CommonSchedulerArgs); every key also takes null.
    private static let commonSchedulerArgs: [(String, ArgType)] = [
        ("num_train_timesteps", .integer), ("beta_start", .number), ("beta_end", .number),
        ("beta_schedule", .string), ("prediction_type", .string), ("timestep_spacing", .string),
        ("steps_offset", .integer), ("rescale_betas_zero_snr", .bool),
    ]
    private static let dpmSchedulerArgs: [(String, ArgType)] = commonSchedulerArgs + [
        ("solver_order", .integer), ("thresholding", .bool), ("dynamic_thresholding_ratio", .number),
        ("sample_max_value", .number), ("algorithm_type", .string), ("solver_type", .string),
        ("lower_order_final", .bool), ("euler_at_final", .bool), ("use_karras_sigmas", .bool),
        ("use_lu_lambdas", .bool), ("final_sigmas_type", .string), ("lambda_min_clipped", .number),
        ("variance_type", .string),
    ]
    private static let lcmSchedulerArgs: [(String, ArgType)] = commonSchedulerArgs + [
        ("original_inference_steps", .integer), ("clip_samples", .integer), ("clip_samples_range", .number),
        ("set_alpha_to_one", .bool), ("thresholding", .bool), ("dynamic_thresholding_ratio", .number),
        ("sample_max_value", .number), ("timestep_scaling", .number),
    ]

    /// The schema's `oneOf` of three `{method: const, args: typed-args|null}` objects. With `method`
    /// present only its variant can match; without it the Relay would accept one odd form that the
    /// nodes refuse, so `method` is required here (see the top of this file).
    private static func lithiumScheduler(_ s: FieldReader) throws(TaskArgumentsError) -> SchedulerMethod {
        let names = SchedulerMethod.allCases.map(\.rawValue)
        guard s.object["method"] != nil else {
            throw s.missing("method", expected: "one of " + names.map { "\"\($0)\"" }.joined(separator: ", ")
                            + ": the nodes choose the scheduler by it")
        }
        let method = SchedulerMethod(rawValue: try s.requiredOneOf("method", names))!
        let args: [(String, ArgType)] = switch method {
        case .dpmSolverMultistep: dpmSchedulerArgs
        case .eulerAncestralDiscrete: commonSchedulerArgs
        case .lcm: lcmSchedulerArgs
        }
        if let a = try s.nested("args", nullable: true) {
            for (key, type) in args { try a.typed(key, type, nullable: true) }
        }
        return method
    }

    // MARK: ControlNet preprocess

    /// The typed `args` of the 11 preprocess methods that have them; the other 13 methods' variants
    /// say nothing about `args`, so any value passes there (and the nodes ignore it).
    private static func checkPreprocessArgs(_ p: FieldReader, method: String) throws(TaskArgumentsError) {
        let rules: [(String, ArgType, nullable: Bool)]
        switch method {
        case "canny": rules = [("low_threshold", .integer, false), ("high_threshold", .integer, false)]
        case "mlsd": rules = [("thr_v", .percent, false), ("thr_d", .percent, false)]
        case "scribble_pidinet", "softedge_pidinet", "scribble_pidisafe", "softedge_pidisafe":
            rules = [("apply_filter", .bool, false)]
        case "depth_zoe": rules = [("gamma_corrected", .bool, false)]
        case "depth_leres", "depth_leres++": rules = [("thr_a", .integer, false), ("thr_b", .integer, false)]
        case "shuffle": rules = [("h", .integer, true), ("w", .integer, true), ("f", .integer, true)]
        case "mediapipe_face": rules = [("max_faces", .integer, false), ("min_confidence", .percent, false)]
        default: return
        }
        guard let a = try p.nested("args", nullable: true) else { return }
        for (key, type, nullable) in rules { try a.typed(key, type, nullable: nullable) }
    }
}

/// The JSON types the Lithium schemas give to scheduler and preprocess args.
enum ArgType {
    case integer, number, string, bool
    /// An integer greater than 0 and at most 100.
    case percent
}

extension FieldReader {
    /// Checks `key`, when present, against `type` (or null when `nullable`).
    func typed(_ key: String, _ type: ArgType, nullable: Bool) throws(TaskArgumentsError) {
        guard let value = object[key] else { return }
        if case .null = value, nullable { return }
        let ok: Bool
        let expected: String
        switch type {
        case .integer:
            expected = "an integer"
            if case .number(let n) = value, n.integerValue != nil { ok = true } else { ok = false }
        case .percent:
            expected = "an integer from 1 to 100"
            if case .number(let n) = value, let i = n.integerValue, (1...100).contains(i) { ok = true } else { ok = false }
        case .number:
            expected = "a number"
            if case .number = value { ok = true } else { ok = false }
        case .string:
            expected = "a string"
            if case .string = value { ok = true } else { ok = false }
        case .bool:
            expected = "true or false"
            if case .bool = value { ok = true } else { ok = false }
        }
        if !ok { throw mismatch(key, expected: expected + (nullable ? ", or null" : ""), got: value) }
    }

    /// An array whose items are all objects (`tool_calls`, `tools`), or null when `nullable`.
    func arrayOfObjects(_ key: String, nullable: Bool) throws(TaskArgumentsError) -> Int? {
        guard let value = object[key] else { return nil }
        let expected = "an array of objects" + (nullable ? ", or null" : "")
        switch value {
        case .null where nullable: return nil
        case .array(let items):
            for (i, item) in items.enumerated() {
                guard case .object = item else {
                    throw TaskArgumentsError(field: "\(fieldPath(key))[\(i)]", message: "must be an object (got \(item.brief))")
                }
            }
            return items.count
        default: throw mismatch(key, expected: expected, got: value)
        }
    }
}

// MARK: GPT (gpt-task v3.1.0)

/// The typed view of LLM task arguments under gpt-task v3.1.0's schema (the Lithium Relay's): content
/// blocks (text and image), the `tool` role, tool calls, and no bounds on the generation options. The
/// era-D/Hydrogen rules are `GPTArguments`.
public struct LithiumGPTArguments: Sendable, Equatable {
    public enum Role: String, Sendable, CaseIterable {
        case system, user, assistant, tool
    }

    public enum ContentBlock: Sendable, Equatable {
        case text(String)
        case image(base64: String)
    }

    public enum Content: Sendable, Equatable {
        case text(String)
        case blocks([ContentBlock])
    }

    /// Every key of a message is optional in the schema.
    public struct Message: Sendable, Equatable {
        public var role: Role?
        /// nil when absent or null.
        public var content: Content?
        public var toolCallID: String?
        /// Number of tool calls (each an object; their members are not checked by the schema).
        public var toolCallCount: Int?
    }

    /// Hugging Face `generate` options; typed but unbounded in this schema.
    public struct GenerationConfig: Sendable, Equatable {
        public var maxNewTokens: Int64?
        public var stopStrings: [String]?
        public var doSample: Bool?
        public var numBeams: Int64?
        public var temperature: Double?
        public var typicalP: Double?
        public var topK: Int64?
        public var topP: Double?
        public var minP: Double?
        public var repetitionPenalty: Double?
        public var numReturnSequences: Int64?
    }

    public var model: String
    /// May be empty.
    public var messages: [Message]
    public var toolCount: Int?
    public var generationConfig: GenerationConfig?
    /// Any integer; nil when absent.
    public var seed: Int64?
    public var dtype: String = "auto"
    public var quantizeBits: Int?

    public init(parsing arguments: String) throws(TaskArgumentsError) {
        try self.init(root: TaskArguments.parseRoot(arguments))
    }

    /// The bridge's create fields for an LLM task (task_size 1, `base:<model>`, 24 GB).
    public var lithiumSpec: LithiumTaskSpec {
        LithiumTaskSpec(taskType: .llm, modelIds: ["base:" + model], minVram: LithiumTaskSpec.llmMinVram,
                        taskSize: 1, resultCount: 1)
    }

    init(root r: FieldReader) throws(TaskArgumentsError) {
        model = try r.requiredString("model", nonEmpty: true)

        let expectedMessages = "an array of message objects"
        guard let list = r.object["messages"] else { throw r.missing("messages", expected: expectedMessages) }
        guard case .array(let items) = list else { throw r.mismatch("messages", expected: expectedMessages, got: list) }
        var messages: [Message] = []
        for (i, item) in items.enumerated() {
            let m = try FieldReader(value: item, path: "messages[\(i)]")
            var message = Message()
            message.role = try m.oneOf("role", Role.allCases.map(\.rawValue)).map { Role(rawValue: $0)! }
            message.content = try Self.content(m)
            message.toolCallID = try m.string("tool_call_id", nullable: true)
            message.toolCallCount = try m.arrayOfObjects("tool_calls", nullable: true)
            messages.append(message)
        }
        self.messages = messages

        toolCount = try r.arrayOfObjects("tools", nullable: true)
        if let g = try r.nested("generation_config", nullable: true) {
            generationConfig = try Self.generationConfig(g)
        }
        _ = try r.nested("template_args", nullable: true)
        seed = try r.integer("seed", in: Int64.min...Int64.max, expected: "an integer")
        dtype = try r.oneOf("dtype", GPTArguments.dtypes) ?? "auto"
        if let bits = try r.integer("quantize_bits", in: 4...8, expected: "4 or 8", nullable: true) {
            guard bits == 4 || bits == 8 else {
                throw r.mismatch("quantize_bits", expected: "4 or 8, or null", got: r.object["quantize_bits"]!)
            }
            quantizeBits = Int(bits)
        }
    }

    /// A string, null, or an array of `{"type": "text", "text": …}` / `{"type": "image", "base64": …}`
    /// blocks with no other keys.
    private static func content(_ m: FieldReader) throws(TaskArgumentsError) -> Content? {
        guard let value = m.object["content"] else { return nil }
        switch value {
        case .null: return nil
        case .string(let s): return .text(s)
        case .array(let items):
            var blocks: [ContentBlock] = []
            for (i, item) in items.enumerated() {
                let b = try FieldReader(value: item, path: m.fieldPath("content") + "[\(i)]")
                let type = try b.requiredOneOf("type", ["text", "image"])
                let payload = type == "text" ? "text" : "base64"
                for key in b.object.keys where key != "type" && key != payload {
                    throw b.fail(key, "is not allowed in a \"\(type)\" content block (only \"type\" and \"\(payload)\")")
                }
                let text = try b.requiredString(payload, nonEmpty: true)
                blocks.append(type == "text" ? .text(text) : .image(base64: text))
            }
            return .blocks(blocks)
        default:
            throw m.mismatch("content", expected: "a string, an array of content blocks, or null", got: value)
        }
    }

    private static func generationConfig(_ g: FieldReader) throws(TaskArgumentsError) -> GenerationConfig {
        var c = GenerationConfig()
        let anyInteger = Int64.min...Int64.max
        c.maxNewTokens = try g.integer("max_new_tokens", in: anyInteger, expected: "an integer")
        if let value = g.object["stop_strings"] {
            guard case .array(let items) = value else {
                throw g.mismatch("stop_strings", expected: "an array of strings", got: value)
            }
            var strings: [String] = []
            for (i, item) in items.enumerated() {
                guard case .string(let s) = item else {
                    throw TaskArgumentsError(field: g.fieldPath("stop_strings") + "[\(i)]", message: "must be a string (got \(item.brief))")
                }
                strings.append(s)
            }
            c.stopStrings = strings
        }
        c.doSample = try g.bool("do_sample")
        c.numBeams = try g.integer("num_beams", in: anyInteger, expected: "an integer")
        c.temperature = try g.number("temperature", expected: "a number") { _ in true }
        c.typicalP = try g.number("typical_p", expected: "a number") { _ in true }
        c.topK = try g.integer("top_k", in: anyInteger, expected: "an integer")
        c.topP = try g.number("top_p", expected: "a number") { _ in true }
        c.minP = try g.number("min_p", expected: "a number") { _ in true }
        c.repetitionPenalty = try g.number("repetition_penalty", expected: "a number") { _ in true }
        c.numReturnSequences = try g.integer("num_return_sequences", in: anyInteger, expected: "an integer")
        return c
    }
}
