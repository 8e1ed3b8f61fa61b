//! The spellings plume recognises, from `shared/reference/genai-attributes.md`.
//! The first name of each list is the current OpenTelemetry name.

use plume_sdk::ValueRef;

/// Attributes copied under their current name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canonical {
    RequestModel,
    ResponseModel,
    ResponseId,
    InputTokens,
    OutputTokens,
    CacheReadTokens,
    CacheWriteTokens,
    ReasoningTokens,
    ToolName,
    ToolCallId,
    AgentName,
    ConversationId,
    UserId,
}

impl Canonical {
    /// The current OpenTelemetry (or general registry) name.
    pub fn name(self) -> &'static str {
        ALIASES
            .iter()
            .find(|(c, _)| *c == self)
            .map(|(_, names)| names[0])
            .unwrap_or_default()
    }
}

/// Each canonical attribute and the spellings that mean it, current first.
pub const ALIASES: &[(Canonical, &[&str])] = &[
    (
        Canonical::RequestModel,
        &[
            "gen_ai.request.model",
            "llm.request.model_name", // OpenInference (new)
            "ai.model.id",            // Vercel AI SDK
            "langfuse.observation.model.name",
        ],
    ),
    (
        Canonical::ResponseModel,
        &[
            "gen_ai.response.model",
            "llm.response.model_name", // OpenInference (new)
            "llm.model_name",          // OpenInference: response model if known
            "ai.response.model",       // Vercel AI SDK
            "llm.response.model",
        ],
    ),
    (
        Canonical::ResponseId,
        &["gen_ai.response.id", "ai.response.id", "llm.response.id"],
    ),
    (
        Canonical::InputTokens,
        &[
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.prompt_tokens", // deprecated OTel, OpenLLMetry < 0.5
            "llm.token_count.prompt",     // OpenInference (inclusive)
            "llm.usage.prompt_tokens",    // old OpenLLMetry
            "ai.usage.inputTokens",       // Vercel AI SDK
            "ai.usage.promptTokens",
            "ai.prompt_tokens.used", // Sentry
        ],
    ),
    (
        Canonical::OutputTokens,
        &[
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
            "llm.token_count.completion",
            "llm.usage.completion_tokens",
            "ai.usage.outputTokens",
            "ai.usage.completionTokens",
            "ai.completion_tokens.used",
        ],
    ),
    (
        Canonical::CacheReadTokens,
        &[
            "gen_ai.usage.cache_read.input_tokens",
            "gen_ai.usage.cache_read_input_tokens", // OpenLLMetry 0.4
            "llm.token_count.prompt_details.cache_read", // OpenInference
            "ai.usage.cachedInputTokens",           // Vercel AI SDK
            "gen_ai.usage.input_tokens.cached",     // Sentry
        ],
    ),
    (
        Canonical::CacheWriteTokens,
        &[
            "gen_ai.usage.cache_write.input_tokens",
            "gen_ai.usage.cache_creation.input_tokens", // before semconv-genai PR 440; OpenLLMetry; Vercel
            "gen_ai.usage.cache_creation_input_tokens", // OpenLLMetry 0.4
            "llm.token_count.prompt_details.cache_write", // OpenInference
            "gen_ai.usage.input_tokens.cache_write",    // Sentry
        ],
    ),
    (
        Canonical::ReasoningTokens,
        &[
            "gen_ai.usage.reasoning.output_tokens",
            "gen_ai.usage.reasoning_tokens", // OpenLLMetry
            "llm.usage.reasoning_tokens",
            "llm.token_count.completion_details.reasoning", // OpenInference
            "ai.usage.reasoningTokens",                     // Vercel AI SDK
            "gen_ai.usage.output_tokens.reasoning",         // Sentry
        ],
    ),
    (
        Canonical::ToolName,
        &["gen_ai.tool.name", "tool.name", "ai.toolCall.name"],
    ),
    (
        Canonical::ToolCallId,
        &["gen_ai.tool.call.id", "tool_call.id", "ai.toolCall.id"],
    ),
    (Canonical::AgentName, &["gen_ai.agent.name", "agent.name"]),
    (
        Canonical::ConversationId,
        &[
            "gen_ai.conversation.id",
            "session.id",
            "langfuse.session.id",
            "ai.telemetry.metadata.sessionId",
        ],
    ),
    (
        Canonical::UserId,
        &[
            "user.id",
            "enduser.id",
            "langfuse.user.id",
            "ai.telemetry.metadata.userId",
            "traceloop.association.properties.user_id",
        ],
    ),
];

/// Where the provider may be, current first.
pub const PROVIDER_KEYS: &[&str] = &[
    "gen_ai.provider.name",
    "gen_ai.system",
    "llm.provider",
    "llm.system",
    "ai.model.provider",
];

/// Keys holding a total token count (used to tell exclusive counts apart).
pub const TOTAL_KEYS: &[&str] = &[
    "gen_ai.usage.total_tokens",
    "llm.token_count.total",
    "llm.usage.total_tokens",
    "ai.usage.totalTokens",
];

/// Keys holding finish reasons, current first.
pub const FINISH_KEYS: &[&str] = &[
    "gen_ai.response.finish_reasons",
    "llm.finish_reason",
    "ai.response.finishReason",
    "gen_ai.response.finish_reason",
    "gen_ai.response.stop_reason",
    "llm.response.finish_reason",
    "llm.response.stop_reason",
    "anthropic.message.stop_reason",
];

/// How to read an operation from a key.
#[derive(Debug, Clone, Copy)]
pub enum OperationHint {
    /// Already an operation name.
    Operation,
    /// OpenInference `openinference.span.kind`.
    OpenInference,
    /// OpenLLMetry `llm.request.type`.
    LlmRequestType,
    /// OpenLLMetry `traceloop.span.kind`.
    Traceloop,
    /// Langfuse `langfuse.observation.type`.
    Langfuse,
    /// Vercel AI SDK `ai.operationId`.
    VercelOperation,
    /// A tool name is present.
    ToolName,
}

/// Operation hints, in the order Langfuse's mapper checks them; the first is
/// the current attribute itself.
pub const OPERATION_HINTS: &[(&str, OperationHint)] = &[
    ("gen_ai.operation.name", OperationHint::Operation),
    ("langfuse.observation.type", OperationHint::Langfuse),
    ("openinference.span.kind", OperationHint::OpenInference),
    ("llm.request.type", OperationHint::LlmRequestType),
    ("traceloop.span.kind", OperationHint::Traceloop),
    ("ai.operationId", OperationHint::VercelOperation),
    ("gen_ai.tool.name", OperationHint::ToolName),
    ("tool.name", OperationHint::ToolName),
    ("ai.toolCall.name", OperationHint::ToolName),
];

/// The operation a hint implies, if any.
pub fn operation(hint: OperationHint, v: ValueRef<'_>) -> Option<&'static str> {
    if matches!(hint, OperationHint::ToolName) {
        return v.is_present().then_some("execute_tool");
    }
    let s = v.as_str()?.to_ascii_lowercase();
    Some(match (hint, s.as_str()) {
        (OperationHint::Operation, _) => return None,
        (OperationHint::OpenInference, "llm") => "chat",
        (OperationHint::OpenInference, "embedding") => "embeddings",
        (OperationHint::OpenInference, "tool") => "execute_tool",
        (OperationHint::OpenInference, "agent") => "invoke_agent",
        (OperationHint::OpenInference, "retriever") => "retrieval",
        (OperationHint::LlmRequestType, "chat") => "chat",
        (OperationHint::LlmRequestType, "completion") => "text_completion",
        (OperationHint::LlmRequestType, "embedding") => "embeddings",
        (OperationHint::Traceloop, "tool") => "execute_tool",
        (OperationHint::Traceloop, "agent") => "invoke_agent",
        (OperationHint::Traceloop, "workflow") => "invoke_workflow",
        (OperationHint::Langfuse, "generation") => "chat",
        (OperationHint::Langfuse, "embedding") => "embeddings",
        (OperationHint::Langfuse, "agent") => "invoke_agent",
        (OperationHint::Langfuse, "tool") => "execute_tool",
        (OperationHint::Langfuse, "retriever") => "retrieval",
        (OperationHint::VercelOperation, op)
            if op.ends_with(".dogenerate") || op.ends_with(".dostream") =>
        {
            "chat"
        }
        (OperationHint::VercelOperation, op) if op.ends_with(".doembed") => "embeddings",
        (OperationHint::VercelOperation, "ai.toolcall") => "execute_tool",
        _ => return None,
    })
}

/// The current `gen_ai.provider.name` for a provider or system value.
pub fn provider(raw: &str) -> Option<String> {
    let lower = raw.trim().to_ascii_lowercase();
    if lower.is_empty() {
        return None;
    }
    Some(
        match lower.as_str() {
            // Renamed `gen_ai.system` values, and OpenLLMetry's CamelCase ones.
            "az.ai.openai" | "azure" | "azure_openai" => "azure.ai.openai",
            "az.ai.inference" => "azure.ai.inference",
            "vertex_ai" | "vertexai" => "gcp.vertex_ai",
            "gemini" | "google_genai" => "gcp.gemini",
            "google" => "gcp.gen_ai",
            "xai" => "x_ai",
            "mistralai" | "mistral" => "mistral_ai",
            "aws" | "bedrock" | "amazon" | "aws_bedrock" => "aws.bedrock",
            "watsonx" => "ibm.watsonx.ai",
            other => {
                // Vercel AI SDK: `openai.responses`, `anthropic.messages`.
                let known = [
                    "openai.",
                    "anthropic.",
                    "google.",
                    "mistral.",
                    "cohere.",
                    "groq.",
                    "deepseek.",
                    "xai.",
                ];
                if let Some(prefix) = known.iter().find(|p| other.starts_with(**p)) {
                    return provider(prefix.trim_end_matches('.'));
                }
                return Some(other.to_string());
            }
        }
        .to_string(),
    )
}
