//! Tool statuses and error categories from spans as real instrumentations
//! write them (texts from the OpenAI and Anthropic SDKs, OpenLLMetry,
//! OpenInference and the official openai-v2 instrumentation; see
//! `shared/reference/genai-attributes.md` section 6).

use super::*;

/// A row with the given fields set.
fn row<'a>(fields: &[(usize, ValueRef<'a>)]) -> Vec<ValueRef<'a>> {
    let mut v = vec![ValueRef::Absent; read::FIXED + default_retry_keys().len()];
    for &(i, value) in fields {
        v[i] = value;
    }
    v
}

fn s(x: &str) -> ValueRef<'_> {
    ValueRef::Str(x)
}

fn tool<'a>(fields: &[(usize, ValueRef<'a>)]) -> Vec<ValueRef<'a>> {
    let mut f = vec![
        (read::OPERATION, s("execute_tool")),
        (read::TOOL_NAME, s("search_docs")),
    ];
    f.extend_from_slice(fields);
    row(&f)
}

fn llm<'a>(fields: &[(usize, ValueRef<'a>)]) -> Vec<ValueRef<'a>> {
    let mut f = vec![(read::OPERATION, s("chat")), (read::MODEL, s("gpt-4o"))];
    f.extend_from_slice(fields);
    row(&f)
}

fn verdict(v: &[ValueRef<'_>]) -> (Option<&'static str>, Option<String>) {
    let c = classify(&rules::builtin(), &mut RuleMemo::default(), v);
    (c.tool_status, c.category)
}

#[test]
fn tool_statuses() {
    let err = (read::STATUS, s("error"));
    assert_eq!(verdict(&tool(&[])), (Some("success"), None));
    assert_eq!(
        verdict(&tool(&[(read::STATUS, s("ok"))])),
        (Some("success"), None)
    );
    // A tool that raised Python's TimeoutError.
    assert_eq!(
        verdict(&tool(&[
            err,
            (read::EXCEPTION_TYPE, s("TimeoutError")),
            (
                read::EXCEPTION_MESSAGE,
                s("search backend did not answer in 30s")
            )
        ])),
        (Some("timeout"), Some("timeout".into()))
    );
    // An HTTP tool that got 429 from its API.
    assert_eq!(
        verdict(&tool(&[(read::HTTP_STATUS, ValueRef::Int(429))])),
        (Some("rate_limited"), Some("rate_limit".into()))
    );
    // Arguments the model produced did not validate (pydantic).
    assert_eq!(
        verdict(&tool(&[
            err,
            (read::EXCEPTION_TYPE, s("ValidationError")),
            (
                read::EXCEPTION_MESSAGE,
                s("1 validation error for SearchArgs\nquery\n  Field required")
            )
        ])),
        (Some("invalid_args"), Some("invalid_args".into()))
    );
    assert_eq!(
        verdict(&tool(&[
            err,
            (read::EXCEPTION_TYPE, s("TypeError")),
            (
                read::EXCEPTION_MESSAGE,
                s("search() got an unexpected keyword argument 'q'")
            )
        ])),
        (Some("invalid_args"), Some("invalid_args".into()))
    );
    // Any other failure.
    assert_eq!(
        verdict(&tool(&[
            err,
            (read::EXCEPTION_TYPE, s("KeyError")),
            (read::EXCEPTION_MESSAGE, s("'hits'"))
        ])),
        (Some("error"), Some("unknown".into()))
    );
    // OpenLLMetry task status.
    assert_eq!(
        verdict(&tool(&[(read::TASK_STATUS, s("failure"))])).0,
        Some("error")
    );
}

#[test]
fn llm_error_categories() {
    let err = (read::STATUS, s("error"));
    let cases: Vec<(Vec<ValueRef<'_>>, &str)> = vec![
        // openai-v2: error.type is the class repr; the status message holds the API text.
        (
            llm(&[
                err,
                (read::ERROR_TYPE, s("<class 'openai.RateLimitError'>")),
                (
                    read::STATUS_MESSAGE,
                    s("Error code: 429 - {'error': {'message': 'Rate limit reached'}}"),
                ),
            ]),
            "rate_limit",
        ),
        (
            llm(&[
                err,
                (read::ERROR_TYPE, s("<class 'openai.BadRequestError'>")),
                (
                    read::STATUS_MESSAGE,
                    s("Error code: 400 - This model's maximum context length is 128000 tokens."),
                ),
            ]),
            "context_length",
        ),
        // Anthropic SDK self-tracing: error.type is the API's error type.
        (
            llm(&[
                err,
                (read::ERROR_TYPE, s("rate_limit_error")),
                (read::HTTP_STATUS, ValueRef::Int(429)),
            ]),
            "rate_limit",
        ),
        (
            llm(&[
                err,
                (read::ERROR_TYPE, s("invalid_request_error")),
                (read::HTTP_STATUS, ValueRef::Int(400)),
                (
                    read::STATUS_MESSAGE,
                    s("prompt is too long: 210000 tokens > 200000 maximum"),
                ),
            ]),
            "context_length",
        ),
        (
            llm(&[
                err,
                (read::ERROR_TYPE, s("overloaded_error")),
                (read::HTTP_STATUS, ValueRef::Int(529)),
            ]),
            "server",
        ),
        (
            llm(&[
                err,
                (read::ERROR_TYPE, s("authentication_error")),
                (read::HTTP_STATUS, ValueRef::Int(401)),
            ]),
            "auth",
        ),
        // OpenInference: no error.type, an exception event.
        (
            llm(&[
                err,
                (read::EXCEPTION_TYPE, s("openai.APIConnectionError")),
                (read::EXCEPTION_MESSAGE, s("Connection error.")),
            ]),
            "network",
        ),
        (
            llm(&[
                err,
                (read::EXCEPTION_TYPE, s("openai.APITimeoutError")),
                (read::EXCEPTION_MESSAGE, s("Request timed out.")),
            ]),
            "timeout",
        ),
        (
            llm(&[
                err,
                (
                    read::STATUS_MESSAGE,
                    s(
                        "Error code: 400 - {'error': {'code': 'content_filter', 'message': 'The response was filtered due to the prompt triggering Azure OpenAI's content management policy.'}}",
                    ),
                ),
            ]),
            "content_filter",
        ),
        (
            llm(&[
                err,
                (read::HTTP_STATUS, ValueRef::Int(400)),
                (
                    read::STATUS_MESSAGE,
                    s("Error code: 400 - unsupported value"),
                ),
            ]),
            "invalid_request",
        ),
        (
            llm(&[err, (read::HTTP_STATUS, ValueRef::Int(404))]),
            "not_found",
        ),
    ];
    for (v, want) in cases {
        let (status, category) = verdict(&v);
        assert_eq!(status, None, "LLM spans get no tool status");
        assert_eq!(category.as_deref(), Some(want), "{v:?}");
    }
    assert_eq!(
        verdict(&llm(&[])),
        (None, None),
        "a successful call has no category"
    );
    assert_eq!(
        verdict(&row(&[(read::STATUS, s("error"))])),
        (None, None),
        "neither tool nor LLM: untouched"
    );
}

#[test]
fn user_rules_come_first_and_are_checked() {
    let custom = Rule::new(RuleConfig {
        category: "quota".into(),
        pattern: Some("(?i)insufficient_quota".into()),
        error_type: None,
        http_status: vec![],
        tool_status: Some("rate_limited".into()),
        applies_to: None,
    })
    .unwrap();
    let mut rules = vec![custom];
    rules.extend(rules::builtin());
    let v = tool(&[
        (read::HTTP_STATUS, ValueRef::Int(429)),
        (read::STATUS_MESSAGE, s("insufficient_quota")),
    ]);
    let c = classify(&rules, &mut RuleMemo::default(), &v);
    assert_eq!(
        (c.tool_status, c.category.as_deref()),
        (Some("rate_limited"), Some("quota"))
    );
    let bad = RuleConfig {
        category: "x".into(),
        pattern: None,
        error_type: None,
        http_status: vec![],
        tool_status: None,
        applies_to: None,
    };
    assert!(Rule::new(bad).is_err());
}

#[test]
fn repeated_identical_calls_count_as_retries() {
    let mut state = State {
        rules: rules::builtin(),
        matches: RuleMemo::default(),
        retry_keys: default_retry_keys().len(),
        seen: plume_sdk::bound::Recent::new(2),
    };
    let call = |parent: &'static str, args: &'static str| {
        tool(&[
            (read::TRACE, s("t1")),
            (read::PARENT, s(parent)),
            (read::ARGUMENTS, s(args)),
        ])
    };
    assert_eq!(state.retries(&call("p", r#"{"q":"a"}"#)), 0);
    assert_eq!(state.retries(&call("p", r#"{"q":"a"}"#)), 1);
    assert_eq!(state.retries(&call("p", r#"{"q":"a"}"#)), 2);
    assert_eq!(
        state.retries(&call("p", r#"{"q":"b"}"#)),
        0,
        "other arguments: another call"
    );
    assert_eq!(
        state.retries(&call("other", r#"{"q":"a"}"#)),
        0,
        "another parent"
    );
    // An attribute wins.
    let mut v = call("p", r#"{"q":"a"}"#);
    v[read::FIXED + 1] = ValueRef::Int(4);
    assert_eq!(state.retries(&v), 4);
}

#[test]
fn remembered_matches_answer_as_the_rules_do() {
    // A rule for tool calls only: the same text from an LLM call matches
    // another rule, so what is remembered must tell the two apart.
    let tools_only = Rule::new(RuleConfig {
        category: "tool_quota".into(),
        pattern: Some("(?i)quota".into()),
        error_type: None,
        http_status: vec![],
        tool_status: None,
        applies_to: Some("tool".into()),
    })
    .unwrap();
    let mut rules = vec![tools_only];
    rules.extend(rules::builtin());
    let failed = |msg: &'static str| [(read::STATUS, s("error")), (read::STATUS_MESSAGE, s(msg))];
    let cases = [
        tool(&failed("quota exceeded")),
        llm(&failed("quota exceeded")),
        tool(&failed("rate limited")),
        tool(&[(read::HTTP_STATUS, ValueRef::Int(429))]),
        tool(&[(read::HTTP_STATUS, ValueRef::Int(504))]),
        tool(&failed("something odd")),
    ];
    let mut memo = RuleMemo::default();
    let mut seen = Vec::new();
    for _ in 0..3 {
        for v in &cases {
            let remembered = classify(&rules, &mut memo, v);
            let fresh = classify(&rules, &mut RuleMemo::default(), v);
            assert_eq!(
                (remembered.tool_status, &remembered.category),
                (fresh.tool_status, &fresh.category)
            );
            seen.push(remembered.category);
        }
    }
    assert_eq!(seen[0].as_deref(), Some("tool_quota"));
    assert_ne!(seen[1].as_deref(), Some("tool_quota"));
    // Bounded: many distinct messages, still answered by the rules.
    let texts: Vec<String> = (0..RULE_MEMO * 2 + 5)
        .map(|i| format!("rate limited, retry in {i} s"))
        .collect();
    for t in &texts {
        let v = tool(&[
            (read::STATUS, s("error")),
            (read::STATUS_MESSAGE, ValueRef::Str(t)),
        ]);
        let c = classify(&rules, &mut memo, &v);
        assert_eq!(c.tool_status, Some("rate_limited"));
        assert!(memo.seen.len() <= RULE_MEMO);
    }
}
