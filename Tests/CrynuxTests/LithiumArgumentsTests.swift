import Ethereum
import Foundation
import StrictJSON
import Testing

@testable import Crynux

// The Lithium Relay's task_args rules (stable-diffusion-task main @4088ef8, gpt-task v3.1.0) and the
// create fields derived from them (crynux-bridge@32a2af0). See Sources/Crynux/LithiumArguments.swift.

private func sd(_ taskConfig: String = "{}", extra: String = "", base: String = #""crynux-network/sdxl-turbo""#) -> String {
    #"{"base_model":"# + base + #","prompt":"a cat","task_config":"# + taskConfig + extra + "}"
}

private func cn(_ body: String) -> String {
    sd(extra: #","controlnet":{"model":"lllyasviel/canny","image_dataurl":"data:image/png;base64,AAAA""# + body + "}")
}

private func gpt(_ messages: String = #"[{"role":"user","content":"hi"}]"#, extra: String = "") -> String {
    #"{"model":"Qwen/Qwen2.5-7B-Instruct","messages":"# + messages + extra + "}"
}

struct LithiumCase: Sendable, CustomTestStringConvertible {
    let kind: TaskKind
    let arguments: String
    /// The refused field's path; nil for a case that must pass.
    let field: String?
    let mentions: String
    var testDescription: String { "\(kind.rawValue) \(field ?? "accepted"): \(arguments)" }

    static func refuse(_ kind: TaskKind, _ arguments: String, _ field: String, _ mentions: String = "") -> Self {
        .init(kind: kind, arguments: arguments, field: field, mentions: mentions)
    }

    static func accept(_ kind: TaskKind, _ arguments: String) -> Self {
        .init(kind: kind, arguments: arguments, field: nil, mentions: "")
    }
}

private let sdCases: [LithiumCase] = [
    // version, base_model, dtype, strings
    .accept(.sd, sd(extra: #","version":"2.5.0""#)),
    .accept(.sd, sd(extra: #","version":"2.5.2""#)),
    .refuse(.sd, sd(extra: #","version":"3.0.0""#), "version", #""2.5.2" (got "3.0.0")"#),
    .refuse(.sd, sd(extra: #","version":null"#), "version", "got null"),
    .refuse(.sd, #"{"prompt":"p","task_config":{}}"#, "base_model", "is missing"),
    .refuse(.sd, sd(base: #""""#), "base_model", #"got """#),
    .refuse(.sd, sd(base: "null"), "base_model", "got null"),
    .accept(.sd, sd(base: #"{"name":"m","variant":null}"#)),
    .refuse(.sd, sd(base: #"{"variant":"fp16"}"#), "base_model.name", "is missing"),
    .refuse(.sd, sd(base: #"{"name":""}"#), "base_model.name", "non-empty"),
    .refuse(.sd, sd(base: #"{"name":"m","variant":3}"#), "base_model.variant", "got 3"),
    .accept(.sd, sd(extra: #","dtype":"bfloat16""#)),
    .refuse(.sd, sd(extra: #","dtype":"fp16""#), "dtype", #"got "fp16""#),
    .refuse(.sd, sd(extra: #","dtype":null"#), "dtype", "got null"),
    .accept(.sd, sd(extra: #","unet":"","vae":"","textual_inversion":"","negative_prompt":"""#)),
    .refuse(.sd, sd(extra: #","unet":null"#), "unet", "got null"),
    .refuse(.sd, sd(extra: #","negative_prompt":null"#), "negative_prompt", "got null"),
    .refuse(.sd, sd(extra: #","vae":1"#), "vae", "got 1"),
    .refuse(.sd, sd(extra: #","textual_inversion":[]"#), "textual_inversion", "empty array"),
    .refuse(.sd, #"{"base_model":"m","prompt":"","task_config":{}}"#, "prompt", "non-empty"),
    .refuse(.sd, #"{"base_model":"m","task_config":{}}"#, "prompt", "is missing"),
    .accept(.sd, sd(extra: #","unknown":{"a":[1]}"#)),

    // task_config
    .refuse(.sd, #"{"base_model":"m","prompt":"p"}"#, "task_config", "is missing"),
    .refuse(.sd, sd("null"), "task_config", "got null"),
    .accept(.sd, sd(#"{"image_width":4096,"image_height":8,"unknown":true}"#)),
    .refuse(.sd, sd(#"{"image_width":7.5}"#), "task_config.image_width", "got 7.5"),
    .refuse(.sd, sd(#"{"image_width":500}"#), "task_config.image_width", "multiple of 8"),  // deliberate
    .refuse(.sd, sd(#"{"image_height":0}"#), "task_config.image_height", "positive"),      // deliberate
    .refuse(.sd, sd(#"{"image_height":-512}"#), "task_config.image_height", "got -512"),  // deliberate
    .accept(.sd, sd(#"{"steps":1e1,"num_images":4.0,"seed":2147483647}"#)),
    .refuse(.sd, sd(#"{"steps":0}"#), "task_config.steps", "got 0"),
    .refuse(.sd, sd(#"{"steps":101}"#), "task_config.steps", "from 1 to 100"),
    .refuse(.sd, sd(#"{"seed":-1}"#), "task_config.seed", "got -1"),
    .refuse(.sd, sd(#"{"seed":2147483648}"#), "task_config.seed", "got 2147483648"),
    .refuse(.sd, sd(#"{"num_images":0}"#), "task_config.num_images", "from 1 to 10"),
    .refuse(.sd, sd(#"{"num_images":11}"#), "task_config.num_images", "got 11"),
    .refuse(.sd, sd(#"{"num_images":2.5}"#), "task_config.num_images", "got 2.5"),
    .refuse(.sd, sd(#"{"num_images":true}"#), "task_config.num_images", "got true"),
    .refuse(.sd, sd(#"{"safety_checker":"yes"}"#), "task_config.safety_checker", "true or false"),
    .accept(.sd, sd(#"{"cfg":7.5}"#)),
    .accept(.sd, sd(#"{"cfg":0}"#)),
    .accept(.sd, sd(#"{"cfg":20}"#)),
    .refuse(.sd, sd(#"{"cfg":20.5}"#), "task_config.cfg", "from 0 to 20"),
    .refuse(.sd, sd(#"{"cfg":-0.1}"#), "task_config.cfg", "got -0.1"),
    .refuse(.sd, sd(#"{"cfg":"7"}"#), "task_config.cfg", #"got "7""#),

    // lora
    .accept(.sd, sd(extra: #","lora":null"#)),
    .accept(.sd, sd(extra: #","lora":{"model":"some/lora","weight_file_name":"","weight":100}"#)),
    .refuse(.sd, sd(extra: #","lora":{}"#), "lora.model", "is missing"),
    .refuse(.sd, sd(extra: #","lora":"some/lora""#), "lora", "an object or null"),
    .refuse(.sd, sd(extra: #","lora":{"model":"l","weight":0}"#), "lora.weight", "got 0"),
    .refuse(.sd, sd(extra: #","lora":{"model":"l","weight_file_name":null}"#), "lora.weight_file_name", "got null"),

    // controlnet
    .accept(.sd, sd(extra: #","controlnet":null"#)),
    .accept(.sd, cn(#","variant":null,"weight":100,"preprocess":null"#)),
    .accept(.sd, cn(#","variant":"fp16""#)),
    .refuse(.sd, sd(extra: #","controlnet":{"image_dataurl":"x"}"#), "controlnet.model", "is missing"),
    .refuse(.sd, cn(#","variant":1"#), "controlnet.variant", "got 1"),
    .refuse(.sd, cn(#","weight":101"#), "controlnet.weight", "got 101"),
    .refuse(.sd, sd(extra: #","controlnet":{"model":"m"}"#), "controlnet.image_dataurl", "is missing"),  // deliberate
    .refuse(.sd, sd(extra: #","controlnet":{"model":"m","image_dataurl":""}"#), "controlnet.image_dataurl", "non-empty"),  // deliberate
    .refuse(.sd, sd(extra: #","controlnet":{"model":"m","image_dataurl":null}"#), "controlnet.image_dataurl", "got null"),
    .refuse(.sd, cn(#","preprocess":{}"#), "controlnet.preprocess.method", "is missing"),
    .refuse(.sd, cn(#","preprocess":{"method":"sobel"}"#), "controlnet.preprocess.method", #"got "sobel""#),
    .refuse(.sd, cn(#","preprocess":"canny""#), "controlnet.preprocess", "an object or null"),
    .accept(.sd, cn(#","preprocess":{"method":"canny","args":{"low_threshold":-5,"high_threshold":2e2}}"#)),
    .accept(.sd, cn(#","preprocess":{"method":"canny","args":null}"#)),
    .refuse(.sd, cn(#","preprocess":{"method":"canny","args":{"low_threshold":"1"}}"#), "controlnet.preprocess.args.low_threshold", "an integer"),
    .refuse(.sd, cn(#","preprocess":{"method":"canny","args":"x"}"#), "controlnet.preprocess.args", "an object or null"),
    .accept(.sd, cn(#","preprocess":{"method":"mlsd","args":{"thr_v":100,"thr_d":1}}"#)),
    .refuse(.sd, cn(#","preprocess":{"method":"mlsd","args":{"thr_v":0}}"#), "controlnet.preprocess.args.thr_v", "from 1 to 100"),
    .refuse(.sd, cn(#","preprocess":{"method":"softedge_pidisafe","args":{"apply_filter":1}}"#), "controlnet.preprocess.args.apply_filter", "true or false"),
    .refuse(.sd, cn(#","preprocess":{"method":"depth_zoe","args":{"gamma_corrected":null}}"#), "controlnet.preprocess.args.gamma_corrected", "got null"),
    .refuse(.sd, cn(#","preprocess":{"method":"depth_leres++","args":{"thr_a":1.5}}"#), "controlnet.preprocess.args.thr_a", "got 1.5"),
    .accept(.sd, cn(#","preprocess":{"method":"shuffle","args":{"h":null,"w":64,"f":2.0}}"#)),
    .refuse(.sd, cn(#","preprocess":{"method":"shuffle","args":{"h":"x"}}"#), "controlnet.preprocess.args.h", "an integer, or null"),
    .refuse(.sd, cn(#","preprocess":{"method":"mediapipe_face","args":{"min_confidence":101}}"#), "controlnet.preprocess.args.min_confidence", "got 101"),
    .refuse(.sd, cn(#","preprocess":{"method":"mediapipe_face","args":{"max_faces":"1"}}"#), "controlnet.preprocess.args.max_faces", #"got "1""#),
    // The 13 methods without typed args take any value there.
    .accept(.sd, cn(#","preprocess":{"method":"openpose","args":"x"}"#)),
    .accept(.sd, cn(#","preprocess":{"method":"depth_midas","args":[1]}"#)),
    // Args typed for one method are not checked under another.
    .accept(.sd, cn(#","preprocess":{"method":"lineart_anime","args":{"low_threshold":"x"}}"#)),

    // scheduler
    .refuse(.sd, sd(extra: #","scheduler":null"#), "scheduler", "got null"),
    .refuse(.sd, sd(extra: #","scheduler":"LCMScheduler""#), "scheduler", "must be an object"),
    .refuse(.sd, sd(extra: #","scheduler":{}"#), "scheduler.method", "is missing"),
    .refuse(.sd, sd(extra: #","scheduler":{"method":"PNDMScheduler"}"#), "scheduler.method", "LCMScheduler"),
    .refuse(.sd, sd(extra: #","scheduler":{"method":null}"#), "scheduler.method", "got null"),
    .accept(.sd, sd(extra: #","scheduler":{"method":"DPMSolverMultistepScheduler","args":null}"#)),
    .accept(.sd, sd(extra: #","scheduler":{"method":"DPMSolverMultistepScheduler","args":{"solver_order":2,"use_karras_sigmas":true,"beta_start":null}}"#)),
    .refuse(.sd, sd(extra: #","scheduler":{"method":"DPMSolverMultistepScheduler","args":{"solver_order":2.5}}"#), "scheduler.args.solver_order", "an integer, or null"),
    .accept(.sd, sd(extra: #","scheduler":{"method":"LCMScheduler","args":{"timestep_scaling":10,"original_inference_steps":50}}"#)),
    .refuse(.sd, sd(extra: #","scheduler":{"method":"LCMScheduler","args":{"beta_start":"x"}}"#), "scheduler.args.beta_start", "a number, or null"),
    .refuse(.sd, sd(extra: #","scheduler":{"method":"LCMScheduler","args":{"timestep_scaling":true}}"#), "scheduler.args.timestep_scaling", "got true"),
    .accept(.sd, sd(extra: #","scheduler":{"method":"EulerAncestralDiscreteScheduler","args":{"timestep_spacing":"trailing","solver_order":"x"}}"#)),
    .refuse(.sd, sd(extra: #","scheduler":{"method":"EulerAncestralDiscreteScheduler","args":{"steps_offset":"1"}}"#), "scheduler.args.steps_offset", #"got "1""#),
    .refuse(.sd, sd(extra: #","scheduler":{"method":"EulerAncestralDiscreteScheduler","args":"x"}"#), "scheduler.args", "an object or null"),
    // The one method-less form the Relay's oneOf accepts: the nodes refuse it (deliberate).
    .refuse(.sd, sd(extra: #","scheduler":{"args":{"solver_order":"x","timestep_scaling":"y"}}"#), "scheduler.method", "the nodes choose"),

    // refiner
    .accept(.sd, sd(extra: #","refiner":null"#)),
    .accept(.sd, sd(extra: #","refiner":{"model":"r","variant":null,"denoising_cutoff":100,"steps":1}"#)),
    .refuse(.sd, sd(extra: #","refiner":{"variant":"fp16"}"#), "refiner.model", "is missing"),
    .refuse(.sd, sd(extra: #","refiner":{"model":"r","variant":1}"#), "refiner.variant", "got 1"),
    .refuse(.sd, sd(extra: #","refiner":{"model":"r","steps":0}"#), "refiner.steps", "got 0"),
    .refuse(.sd, sd(extra: #","refiner":{"model":"r","denoising_cutoff":101}"#), "refiner.denoising_cutoff", "got 101"),

    // the document
    .refuse(.sd, "[]", "task_args", "JSON object"),
    .refuse(.sd, #"{"base_model":"m","prompt":"p","task_config":{"seed":1e400}}"#, "task_args", "out of range"),
]

private let gptCases: [LithiumCase] = [
    .accept(.gpt, gpt()),
    .accept(.gpt, gpt("[]")),
    .accept(.gpt, gpt("[{}]")),
    .accept(.gpt, gpt(#"[{"role":"tool","content":null,"tool_call_id":"call_1"},{"role":"assistant","tool_calls":[{"id":"c"}],"tool_call_id":null}]"#)),
    .accept(.gpt, gpt(#"[{"role":"user","content":[]},{"role":"user","content":""}]"#)),
    .accept(.gpt, gpt(#"[{"role":"user","content":[{"type":"text","text":"what is this?"},{"type":"image","base64":"iVBORw0KGgo="}]}]"#)),
    .refuse(.gpt, #"{"messages":[]}"#, "model", "is missing"),
    .refuse(.gpt, #"{"model":"","messages":[]}"#, "model", "non-empty"),
    .refuse(.gpt, #"{"model":"m"}"#, "messages", "is missing"),
    .refuse(.gpt, gpt("{}"), "messages", "an array"),
    .refuse(.gpt, gpt("null"), "messages", "got null"),
    .refuse(.gpt, gpt("[1]"), "messages[0]", "must be an object"),
    .refuse(.gpt, gpt(#"[{"role":"developer","content":"x"}]"#), "messages[0].role", #""tool" (got "developer")"#),
    .refuse(.gpt, gpt(#"[{"role":null}]"#), "messages[0].role", "got null"),
    .refuse(.gpt, gpt(#"[{"role":"user","content":5}]"#), "messages[0].content", "got 5"),
    .refuse(.gpt, gpt(#"[{"content":{"type":"text","text":"t"}}]"#), "messages[0].content", "an object"),
    .refuse(.gpt, gpt(#"[{"content":["hi"]}]"#), "messages[0].content[0]", "must be an object"),
    .refuse(.gpt, gpt(#"[{"content":[{"type":"text"}]}]"#), "messages[0].content[0].text", "is missing"),
    .refuse(.gpt, gpt(#"[{"content":[{"type":"text","text":""}]}]"#), "messages[0].content[0].text", "non-empty"),
    .refuse(.gpt, gpt(#"[{"content":[{"type":"image","base64":"x","text":"y"}]}]"#), "messages[0].content[0].text", "not allowed"),
    .refuse(.gpt, gpt(#"[{"content":[{"type":"text","text":"t","cache":true}]}]"#), "messages[0].content[0].cache", "not allowed"),
    .refuse(.gpt, gpt(#"[{"content":[{"type":"video","url":"u"}]}]"#), "messages[0].content[0].type", #"got "video""#),
    .refuse(.gpt, gpt(#"[{"content":[{"text":"t"}]}]"#), "messages[0].content[0].type", "is missing"),
    .refuse(.gpt, gpt(#"[{"content":[{"type":"image","base64":""}]}]"#), "messages[0].content[0].base64", "non-empty"),
    .refuse(.gpt, gpt(#"[{"tool_call_id":1}]"#), "messages[0].tool_call_id", "got 1"),
    .refuse(.gpt, gpt(#"[{"tool_calls":{}}]"#), "messages[0].tool_calls", "an array of objects, or null"),
    .refuse(.gpt, gpt(#"[{"tool_calls":[1]}]"#), "messages[0].tool_calls[0]", "must be an object"),
    .accept(.gpt, gpt(extra: #","tools":null,"template_args":null"#)),
    .accept(.gpt, gpt(extra: #","tools":[{"type":"function"}],"template_args":{"enable_thinking":false}"#)),
    .refuse(.gpt, gpt(extra: #","tools":"f""#), "tools", "an array of objects"),
    .refuse(.gpt, gpt(extra: #","tools":[[]]"#), "tools[0]", "must be an object"),
    .refuse(.gpt, gpt(extra: #","template_args":[]"#), "template_args", "an object or null"),
    .accept(.gpt, gpt(extra: #","generation_config":null"#)),
    .accept(.gpt, gpt(extra: #","generation_config":{"max_new_tokens":0,"temperature":-1,"top_p":7,"top_k":-3,"num_beams":0,"num_return_sequences":9,"min_p":0.05,"stop_strings":[],"do_sample":false,"typical_p":2,"repetition_penalty":0}"#)),
    .refuse(.gpt, gpt(extra: #","generation_config":"greedy""#), "generation_config", "an object or null"),
    .refuse(.gpt, gpt(extra: #","generation_config":{"max_new_tokens":1.5}"#), "generation_config.max_new_tokens", "an integer"),
    .refuse(.gpt, gpt(extra: #","generation_config":{"temperature":"hot"}"#), "generation_config.temperature", "a number"),
    .refuse(.gpt, gpt(extra: #","generation_config":{"do_sample":1}"#), "generation_config.do_sample", "true or false"),
    .refuse(.gpt, gpt(extra: #","generation_config":{"stop_strings":"x"}"#), "generation_config.stop_strings", "an array of strings"),
    .refuse(.gpt, gpt(extra: #","generation_config":{"stop_strings":["a",1]}"#), "generation_config.stop_strings[1]", "must be a string"),
    .refuse(.gpt, gpt(extra: #","generation_config":{"min_p":null}"#), "generation_config.min_p", "got null"),
    .refuse(.gpt, gpt(extra: #","generation_config":{"top_k":null}"#), "generation_config.top_k", "got null"),
    .accept(.gpt, gpt(extra: #","seed":-7"#)),
    .accept(.gpt, gpt(extra: #","seed":1099511627776"#)),
    .refuse(.gpt, gpt(extra: #","seed":1.5"#), "seed", "got 1.5"),
    .refuse(.gpt, gpt(extra: #","seed":null"#), "seed", "got null"),
    .accept(.gpt, gpt(extra: #","dtype":"float32""#)),
    .refuse(.gpt, gpt(extra: #","dtype":"int8""#), "dtype", #"got "int8""#),
    .accept(.gpt, gpt(extra: #","quantize_bits":8.0"#)),
    .accept(.gpt, gpt(extra: #","quantize_bits":null"#)),
    .refuse(.gpt, gpt(extra: #","quantize_bits":16"#), "quantize_bits", "4 or 8"),
    .refuse(.gpt, gpt(extra: #","quantize_bits":"4""#), "quantize_bits", #"got "4""#),
    .accept(.gpt, gpt(extra: #","unknown":[null]"#)),
]

// MARK: the deliberate differences, by rule (LithiumArguments.swift explains each)

/// Why Swift refuses a document that the Relay's schema accepts, or nil.
func lithiumDeliberateRefusal(_ kind: TaskKind, _ doc: JSON) -> String? {
    guard kind == .sd, case .object(let o) = doc else { return nil }
    if case .object(let s)? = o["scheduler"], s["method"] == nil { return "scheduler without method" }
    if case .object(let c)? = o["controlnet"] {
        switch c["image_dataurl"] {
        case nil, .string("")?: return "controlnet without image"
        default: break
        }
    }
    if case .object(let t)? = o["task_config"] {
        for key in ["image_width", "image_height"] {
            if case .number(let n)? = t[key], let v = n.integerValue, v <= 0 || v % 8 != 0 { return "image size" }
        }
    }
    return nil
}

@Suite struct LithiumArgumentsTests {
    @Test(arguments: sdCases + gptCases)
    func rule(_ c: LithiumCase) throws {
        guard let field = c.field else {
            _ = try TaskArguments.lithiumSpec(kind: c.kind, arguments: c.arguments)
            return
        }
        do {
            let spec = try TaskArguments.lithiumSpec(kind: c.kind, arguments: c.arguments)
            Issue.record("accepted, expected a refusal of \(field): \(spec)")
        } catch {
            #expect(error.field == field, "\(error)")
            #expect(error.message.contains(c.mentions), "\(error)")
        }
    }

    @Test func sdSpecFromAStringBaseModel() throws {
        let spec = try TaskArguments.lithiumSpec(kind: .sd, arguments: sd(#"{"num_images":2}"#))
        #expect(spec == LithiumTaskSpec(taskType: .sd, modelIds: ["base:crynux-network/sdxl-turbo"], minVram: 14,
                                        taskSize: 2, taskVersion: "3.1.0", resultCount: 2))
    }

    @Test func sdSpecWithVariantsLoraAndControlNet() throws {
        let args = #"""
        {"base_model":{"name":"crynux-network/stable-diffusion-v1-5","variant":"fp16"},"prompt":"p",
         "task_config":{"num_images":3.0,"cfg":7.5},"lora":{"model":"crynux-network/mylora"},
         "controlnet":{"model":"lllyasviel/canny","variant":"fp16","image_dataurl":"data:image/png;base64,AAAA"},
         "refiner":{"model":"some/refiner"},"vae":"some/vae","unet":"some/unet","textual_inversion":"some/ti"}
        """#
        let spec = try TaskArguments.lithiumSpec(kind: .sd, arguments: args)
        #expect(spec.modelIds == ["base:crynux-network/stable-diffusion-v1-5+fp16", "lora:crynux-network/mylora",
                                  "controlnet:lllyasviel/canny+fp16"])
        #expect(spec.minVram == 8)
        #expect(spec.taskSize == 3 && spec.resultCount == 3)
        #expect(spec.taskType == .sd && spec.taskType.rawValue == 0)

        let parsed = try StableDiffusionArguments(parsing: args, schema: .lithium)
        #expect(parsed.taskConfig.cfg == 7.5)
        #expect(parsed.controlnet?.variant == "fp16")
        #expect(parsed.refiner == .init(model: "some/refiner", variant: nil, denoisingCutoff: 80, steps: 20))
    }

    @Test func sdSpecVariantsNullOrEmpty() throws {
        let nulls = sd(extra: #","controlnet":{"model":"c","variant":null,"image_dataurl":"x"},"lora":null"#,
                       base: #"{"name":"crynux-network/sdxl-turbo","variant":null}"#)
        #expect(try TaskArguments.lithiumSpec(kind: .sd, arguments: nulls).modelIds
                == ["base:crynux-network/sdxl-turbo", "controlnet:c"])
        // The bridge appends any string variant, even an empty one.
        let empty = sd(base: #"{"name":"m","variant":""}"#)
        #expect(try TaskArguments.lithiumSpec(kind: .sd, arguments: empty).modelIds == ["base:m+"])
    }

    @Test func sdSpecDefaultsAndMinVram() throws {
        // num_images absent: the schema's default, 6 (the node renders 6).
        let spec = try TaskArguments.lithiumSpec(kind: .sd, arguments: sd(base: #""someone/custom-model""#))
        #expect(spec.taskSize == 6 && spec.resultCount == 6 && spec.minVram == 10)
        #expect(spec.taskVersion == LithiumTaskSpec.defaultTaskVersion)
        // Era-D names are not special on Lithium (the bridge knows only the crynux-network ones).
        #expect(try TaskArguments.lithiumSpec(kind: .sd, arguments: sd(base: #""crynux-ai/sdxl-turbo""#)).minVram == 10)
        #expect(try TaskArguments.lithiumSpec(kind: .sd, arguments: sd(base: #""crynux-network/stable-diffusion-xl-base-1.0""#)).minVram == 10)
        // Case: the Relay lowercases the name, so the node runs sdxl-turbo; the id keeps the case as sent.
        let mixed = try TaskArguments.lithiumSpec(kind: .sd, arguments: sd(base: #""Crynux-Network/SDXL-Turbo""#))
        #expect(mixed.minVram == 14 && mixed.modelIds == ["base:Crynux-Network/SDXL-Turbo"])
    }

    @Test func llmSpec() throws {
        let spec = try TaskArguments.lithiumSpec(kind: .gpt, arguments: gpt())
        #expect(spec == LithiumTaskSpec(taskType: .llm, modelIds: ["base:Qwen/Qwen2.5-7B-Instruct"], minVram: 24,
                                        taskSize: 1, taskVersion: "3.1.0", resultCount: 1))
        #expect(spec.taskType.rawValue == 1)
        let parsed = try LithiumGPTArguments(parsing: gpt(#"[{"role":"user","content":[{"type":"text","text":"t"},{"type":"image","base64":"b"}]}]"#))
        #expect(parsed.messages == [.init(role: .user, content: .blocks([.text("t"), .image(base64: "b")]))])
    }

    /// What the Relay checks of the create fields (create_task.go): three unsigned decimal parts in
    /// task_version, at least one model id, each id with its `base:`/`lora:`/`controlnet:` prefix.
    @Test func specPassesTheRelaysCreateChecks() throws {
        for (kind, args) in [(TaskKind.sd, cn("")), (.gpt, gpt())] {
            let spec = try TaskArguments.lithiumSpec(kind: kind, arguments: args)
            let parts = spec.taskVersion.split(separator: ".", omittingEmptySubsequences: false)
            #expect(parts.count == 3 && parts.allSatisfy { UInt64($0) != nil })
            #expect(!spec.modelIds.isEmpty && spec.modelIds[0].hasPrefix("base:"))
            #expect(spec.modelIds.allSatisfy { ["base:", "lora:", "controlnet:"].contains(where: $0.hasPrefix) })
            #expect(spec.taskSize >= 1 && spec.minVram > 0)
        }
    }

    @Test func validateWithTheLithiumSchema() throws {
        let args = sd(#"{"num_images":2,"cfg":7.5}"#, extra: #","dtype":"float16""#)
        let task = try TaskArguments.validate(kind: .sd, arguments: args, sdSchema: .lithium)
        #expect(task.cap == 2 && task.resultCount == 2 && task.vramLimit == 14 && task.taskType == 0)
        #expect(task.taskHash == keccak256(Array(args.utf8)))
        // The era-D schemas still refuse what only Lithium has.
        #expect(throws: TaskArgumentsError.self) { try TaskArguments.validate(kind: .sd, arguments: args, sdSchema: .v8fcf6e7) }

        let chat = gpt(#"[{"role":"tool","content":[{"type":"text","text":"t"}]}]"#)
        let g = try TaskArguments.validate(kind: .gpt, arguments: chat, sdSchema: .lithium)
        #expect(g.cap == 1 && g.resultCount == 1 && g.vramLimit == 24 && g.taskType == 1)
        #expect(throws: TaskArgumentsError.self) { try TaskArguments.validate(kind: .gpt, arguments: chat, sdSchema: .v8fcf6e7) }
        #expect(SDSchema.lithiumDefault == .lithium)
    }

    @Test func eraDValidationIsUnchanged() throws {
        // cfg stays an integer there, crynux-network names keep the default VRAM of era D.
        #expect(throws: TaskArgumentsError.self) {
            try TaskArguments.validate(kind: .sd, arguments: sd(#"{"cfg":7.5}"#), sdSchema: .v8fcf6e7)
        }
        #expect(try TaskArguments.validate(kind: .sd, arguments: sd(), sdSchema: .v68b52d2).vramLimit == 10)
        #expect(try TaskArguments.validate(kind: .gpt, arguments: gpt(), sdSchema: .v68b52d2).vramLimit == 8)
    }

    // MARK: agreement with Python jsonschema on the devnet's schemas

    @Test func agreesWithTheRecordedCorpus() throws {
        guard let dir = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            Issue.record("Fixtures folder missing from the test bundle")
            return
        }
        let data = try Data(contentsOf: dir.appendingPathComponent("lithium-args-corpus.json"))
        guard case .object(let corpus) = try JSON.parse(bytes: Array(data)) else {
            Issue.record("corpus is not an object")
            return
        }
        var total = 0, recordedValid = 0, deliberate: [String: Int] = [:]
        var disagreements: [String] = []
        for (key, kind) in [("sd", TaskKind.sd), ("gpt", .gpt)] {
            guard case .array(let rows)? = corpus[key] else {
                Issue.record("corpus has no \(key) array")
                continue
            }
            #expect(rows.count > 1000)
            for row in rows {
                guard case .array(let pair) = row, pair.count == 2, case .number(let verdict) = pair[0],
                      case .string(let text) = pair[1] else {
                    Issue.record("malformed row \(row.brief)")
                    continue
                }
                total += 1
                let schemaValid = verdict.integerValue == 1
                var expected = schemaValid
                if schemaValid {
                    recordedValid += 1
                    if let doc = try? JSON.parse(text), let reason = lithiumDeliberateRefusal(kind, doc) {
                        deliberate[reason, default: 0] += 1
                        expected = false
                    }
                }
                var swiftValid = true
                var refusal = ""
                do {
                    _ = try TaskArguments.lithiumSpec(kind: kind, arguments: text)
                } catch {
                    swiftValid = false
                    refusal = error.description
                }
                if swiftValid != expected {
                    disagreements.append("\(key) expected \(expected ? "accept" : "refuse"), Swift \(swiftValid ? "accepts" : "refuses: \(refusal)"): \(text)")
                }
            }
        }
        #expect(total > 4000)
        #expect(disagreements.isEmpty, """
            \(disagreements.count) of \(total) documents disagree (\(recordedValid) valid by the schema; \
            deliberately refused: \(deliberate)); first ones:
            \(disagreements.prefix(15).joined(separator: "\n"))
            """)
        // The deliberate refusals are exercised by the corpus too.
        #expect(deliberate.count == 3, "\(deliberate)")
    }
}
