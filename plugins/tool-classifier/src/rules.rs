//! Error-category rules: data, with built-in defaults users can extend.

use regex_lite::Regex;
use serde::Deserialize;

/// A rule as written in the config.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub category: String,
    pub pattern: Option<String>,
    pub error_type: Option<String>,
    #[serde(default)]
    pub http_status: Vec<i64>,
    pub tool_status: Option<String>,
    /// `tool`, `llm` or `any` (default).
    pub applies_to: Option<String>,
}

/// A compiled rule.
pub struct Rule {
    pub category: String,
    pattern: Option<Regex>,
    error_type: Option<Regex>,
    http_status: Vec<i64>,
    tool_status: Option<&'static str>,
    applies_to: Option<bool>,
}

const TOOL_STATUSES: [&str; 5] = [
    "success",
    "error",
    "timeout",
    "rate_limited",
    "invalid_args",
];

impl Rule {
    /// Compiles a rule, checking its fields.
    pub fn new(c: RuleConfig) -> Result<Rule, String> {
        if c.category.is_empty() {
            return Err("category must not be empty".into());
        }
        if c.pattern.is_none() && c.error_type.is_none() && c.http_status.is_empty() {
            return Err("give at least one of pattern, error_type, http_status".into());
        }
        let re = |p: &Option<String>, what: &str| {
            p.as_deref()
                .map(Regex::new)
                .transpose()
                .map_err(|e| format!("{what}: {e}"))
        };
        let tool_status = match c.tool_status.as_deref() {
            None => None,
            Some(s) => Some(
                *TOOL_STATUSES
                    .iter()
                    .find(|t| **t == s)
                    .ok_or_else(|| format!("tool_status must be one of {TOOL_STATUSES:?}"))?,
            ),
        };
        let applies_to = match c.applies_to.as_deref() {
            None | Some("any") => None,
            Some("tool") => Some(true),
            Some("llm") => Some(false),
            Some(other) => {
                return Err(format!(
                    "applies_to must be tool, llm or any, not {other:?}"
                ));
            }
        };
        Ok(Rule {
            pattern: re(&c.pattern, "pattern")?,
            error_type: re(&c.error_type, "error_type")?,
            http_status: c.http_status,
            tool_status,
            applies_to,
            category: c.category,
        })
    }

    /// Whether the rule matches a failure.
    pub fn matches(&self, types: &str, all_text: &str, http: Option<i64>, is_tool: bool) -> bool {
        if self.applies_to.is_some_and(|t| t != is_tool) {
            return false;
        }
        http.is_some_and(|h| self.http_status.contains(&h))
            || self
                .error_type
                .as_ref()
                .is_some_and(|r| !types.is_empty() && r.is_match(types))
            || self
                .pattern
                .as_ref()
                .is_some_and(|r| !all_text.is_empty() && r.is_match(all_text))
    }

    /// The tool status this category implies.
    pub fn tool_status(&self) -> &'static str {
        self.tool_status.unwrap_or(match self.category.as_str() {
            "rate_limit" => "rate_limited",
            "timeout" => "timeout",
            "invalid_args" => "invalid_args",
            _ => "error",
        })
    }
}

fn rule(category: &str, pattern: &str, http: &[i64]) -> Rule {
    Rule::new(RuleConfig {
        category: category.into(),
        pattern: Some(pattern.into()),
        error_type: None,
        http_status: http.to_vec(),
        tool_status: None,
        applies_to: None,
    })
    .expect("built-in rules compile")
}

/// The built-in rules, most specific first. Texts seen in the wild: OpenAI
/// and Anthropic SDK errors (`RateLimitError`, `rate_limit_error`,
/// `context_length_exceeded`, "prompt is too long"), OpenTelemetry
/// `error.type` values, Python and JS exception names.
pub fn builtin() -> Vec<Rule> {
    vec![
        rule(
            "context_length",
            r"(?i)context[_ .-]?length|maximum context|context window|prompt is too long|too many tokens|input is too long|model_context_window_exceeded",
            &[],
        ),
        rule(
            "rate_limit",
            r"(?i)rate[_ .-]?limit|too many requests|throttl|resource[_ ]?exhausted|\b429\b",
            &[429],
        ),
        rule(
            "timeout",
            r"(?i)time[_ .-]?out|timed out|deadline[_ ]exceeded",
            &[408, 504],
        ),
        rule(
            "content_filter",
            r"(?i)content[_ .-]?(filter|policy|management)|safety|moderation|refus",
            &[],
        ),
        rule(
            "auth",
            r"(?i)\bauth|authenticat|unauthori[sz]ed|forbidden|permission[_ ]denied|api[_ .-]?key",
            &[401, 403],
        ),
        rule(
            "invalid_args",
            r"(?i)invalid[_ .-]?arg|validation|missing (a )?required|required (field|argument|parameter)|unexpected (keyword )?argument|invalid (json|parameter|input)|json ?decode|schema|TypeError|ValueError",
            &[422],
        ),
        rule(
            "network",
            r"(?i)connection|connect(ion)?[_ ]?error|network|dns|ECONNRESET|ECONNREFUSED|EHOSTUNREACH|unreachable|socket|broken pipe",
            &[],
        ),
        rule(
            "server",
            r"(?i)internal[_ ]server|server[_ ]error|overloaded|service unavailable|bad gateway|InternalServerError|APIStatusError 5\d\d",
            &[500, 502, 503, 529],
        ),
        rule("not_found", r"(?i)not[_ ]?found", &[404]),
        rule(
            "invalid_request",
            r"(?i)invalid[_ ]request|bad request|BadRequest",
            &[400],
        ),
    ]
}
