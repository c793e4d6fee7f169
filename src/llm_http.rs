//! A client of the real model APIs, Anthropic's Messages API and OpenAI's Chat Completions,
//! over HTTPS: what the research_agent example calls instead of its simulation when
//! `ANTHROPIC_API_KEY` or `OPENAI_API_KEY` is set.
//!
//! It is written for use inside a step: every failure comes back as a [`StepFailure`] whose
//! class follows the retry table of [`workflow_runtime::retry`] (a 429 waits for its
//! Retry-After, a 5xx is retried with backoff, a 401 stops the run), the step's idempotency key
//! is sent with the request, and the tokens used are reported to the step so that the engine
//! prices them and charges the run's budget.
//!
//! ```no_run
//! use workflow_examples::llm_http::LlmClient;
//! use workflow_runtime::step;
//!
//! # async fn demo() -> Result<(), workflow_runtime::StepError> {
//! if let Some(client) = LlmClient::from_env() {
//!     // `Completion` is not journaled as it is: keep what the workflow needs from it.
//!     let text = step("ask")
//!         .run(|| async { client.complete("Say hi", 50).await.map(|c| c.text) })
//!         .await?;
//!     println!("{} said: {text}", client.model());
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Once;

use reqwest::header::{HeaderValue, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use workflow_runtime::{ErrorClass, HttpError, StepContext, StepFailure, Usage};

use crate::sim_llm::Completion;

/// The `anthropic-version` header the Messages API requires; the response shape parsed here is
/// the one this version defines.
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// How much of an error response's body goes into the error message: enough to read the
/// API's explanation, not so much that a proxy's HTML page floods the journal.
const EXCERPT_CHARS: usize = 300;

/// Which API a [`LlmClient`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Anthropic's Messages API: `POST {base}/v1/messages`.
    Anthropic,
    /// OpenAI's Chat Completions API: `POST {base}/v1/chat/completions`.
    OpenAi,
}

impl Provider {
    /// The base URL used when none is configured.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Provider::Anthropic => "https://api.anthropic.com",
            Provider::OpenAi => "https://api.openai.com",
        }
    }

    /// The model used when `LLM_MODEL` is not set.
    pub fn default_model(self) -> &'static str {
        match self {
            Provider::Anthropic => "claude-sonnet-4-5",
            Provider::OpenAi => "gpt-4o-mini",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Provider::Anthropic => "Anthropic",
            Provider::OpenAi => "OpenAI",
        }
    }

    fn key_var(self) -> &'static str {
        match self {
            Provider::Anthropic => "ANTHROPIC_API_KEY",
            Provider::OpenAi => "OPENAI_API_KEY",
        }
    }

    fn base_url_var(self) -> &'static str {
        match self {
            Provider::Anthropic => "ANTHROPIC_BASE_URL",
            Provider::OpenAi => "OPENAI_BASE_URL",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Provider::Anthropic => "/v1/messages",
            Provider::OpenAi => "/v1/chat/completions",
        }
    }
}

/// A client of one model of one provider.
///
/// Cloning it is cheap and shares the connection setup (TLS roots, crypto provider).
#[derive(Clone)]
pub struct LlmClient {
    provider: Provider,
    /// Without a trailing slash or `/v1`.
    base_url: String,
    api_key: String,
    model: String,
    /// Building fails only when the TLS setup does (no CA certificates on the system, say);
    /// the error is kept and returned by every call, so that a misconfigured machine fails
    /// the step that needs the API, with the reason, instead of silently using the simulation.
    http: Result<reqwest::Client, String>,
}

impl fmt::Debug for LlmClient {
    // By hand, so that the API key never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmClient")
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl LlmClient {
    /// The client the environment asks for: Anthropic if `ANTHROPIC_API_KEY` is set, else
    /// OpenAI if `OPENAI_API_KEY` is set, else `None` (run the simulation).
    ///
    /// `ANTHROPIC_BASE_URL` / `OPENAI_BASE_URL` replace the provider's base URL (a gateway, a
    /// local mock), and `LLM_MODEL` the model (default `claude-sonnet-4-5` / `gpt-4o-mini`).
    /// Empty variables count as unset, so `ANTHROPIC_API_KEY= cargo run ...` stays offline.
    pub fn from_env() -> Option<LlmClient> {
        from_lookup(|name| std::env::var(name).ok())
    }

    /// A client of `model` at `base_url` (such as `https://api.anthropic.com`; a trailing `/v1`,
    /// as the providers' SDKs write their base URLs, is accepted too) with `api_key`.
    pub fn new(
        provider: Provider,
        base_url: impl Into<String>,
        api_key: impl Into<String>,
        model: impl Into<String>,
    ) -> LlmClient {
        let base_url = base_url.into();
        let base_url = base_url.trim_end_matches('/');
        let base_url = base_url.strip_suffix("/v1").unwrap_or(base_url).to_owned();
        LlmClient {
            provider,
            base_url,
            api_key: api_key.into(),
            model: model.into(),
            http: build_http_client(),
        }
    }

    /// The provider this client calls.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The model this client asks for, and under which it reports usage (so a price set with
    /// [`Engine::set_price`](workflow_runtime::Engine::set_price) for this name applies).
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Sends `prompt` as a single user message and returns the model's text, with at most
    /// `max_tokens` tokens of output.
    ///
    /// Inside a step, the step's idempotency key goes out as the `Idempotency-Key` header, and
    /// the tokens used are reported with [`StepContext::report_usage`]. The returned
    /// [`Completion::usage`] holds the tokens under this client's model, without a cost: the
    /// engine's pricing table prices what is reported to the step.
    ///
    /// Errors, by [`ErrorClass`]: a non-2xx response is an [`HttpError`] classified by its
    /// status (429 rate limited, honouring Retry-After; 5xx server; 401/403 auth; other 4xx
    /// client); a connection failure is transient and a transport timeout a timeout; a 2xx
    /// body without the expected fields is a schema error naming the missing field; an
    /// unusable configuration (an invalid base URL, no TLS roots) is terminal.
    ///
    /// There is no client-side time limit: give the step a `timeout`.
    pub async fn complete(&self, prompt: &str, max_tokens: u32) -> Result<Completion, StepFailure> {
        let http = self.http.as_ref().map_err(|reason| {
            StepFailure::terminal(format!(
                "the HTTPS client for {} cannot be built: {reason}",
                self.provider.name()
            ))
        })?;
        let step = StepContext::current();
        let messages = json!([{ "role": "user", "content": prompt }]);
        let body = json!({ "model": self.model, "max_tokens": max_tokens, "messages": messages });
        let url = format!("{}{}", self.base_url, self.provider.path());
        let mut request = http.post(url).json(&body);
        request = match self.provider {
            Provider::Anthropic => request
                .header("x-api-key", &self.api_key)
                .header("anthropic-version", ANTHROPIC_VERSION),
            Provider::OpenAi => request.bearer_auth(&self.api_key),
        };
        // The same key on every attempt and after a crash, so a provider that deduplicates
        // does not bill a retried request twice. A run id that cannot be a header value
        // (non-ASCII) only loses that deduplication; it must not fail the call.
        if let Some(key) = step
            .as_ref()
            .and_then(|s| HeaderValue::from_str(s.idempotency_key()).ok())
        {
            request = request.header("Idempotency-Key", key);
        }

        let response = request
            .send()
            .await
            .map_err(|e| self.transport_failure(e))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            // The status decides the class; a body that cannot be read only costs the message.
            let body = response.bytes().await.unwrap_or_default();
            return Err(StepFailure::from_error(HttpError::new(
                status.as_u16(),
                retry_after.as_deref(),
                error_excerpt(&body),
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_failure(e))?;

        let schema = |detail: String| {
            StepFailure::new(
                ErrorClass::Schema,
                format!(
                    "the {} response does not have the expected shape: {detail}",
                    self.provider.name()
                ),
            )
        };
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            schema(format!(
                "its body is not JSON ({e}): {}",
                excerpt(&String::from_utf8_lossy(&body))
            ))
        })?;
        let (input_tokens, output_tokens) = read_usage(self.provider, &value).map_err(schema)?;
        let usage = Usage::tokens(self.model.clone(), input_tokens, output_tokens);
        // Reported before the text is checked: a response without text was billed all the same.
        if let Some(step) = &step {
            step.report_usage(usage.clone());
        }
        let text = read_text(self.provider, &value).map_err(schema)?;
        Ok(Completion { text, usage })
    }

    fn transport_failure(&self, error: reqwest::Error) -> StepFailure {
        let class = if error.is_timeout() {
            ErrorClass::Timeout
        } else if error.is_builder() {
            // The request could not even be built (an invalid base URL): no retry can help.
            ErrorClass::Terminal
        } else {
            ErrorClass::Transient
        };
        // reqwest's own message is terse; the causes (connection refused, TLS alert) are in
        // its chain, which StepFailure::message follows.
        StepFailure::new(class, error)
    }
}

fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Option<LlmClient> {
    let var = |name: &str| var(name).filter(|value| !value.trim().is_empty());
    let (provider, key) = [Provider::Anthropic, Provider::OpenAi]
        .into_iter()
        .find_map(|provider| var(provider.key_var()).map(|key| (provider, key)))?;
    let base_url =
        var(provider.base_url_var()).unwrap_or_else(|| provider.default_base_url().to_owned());
    let model = var("LLM_MODEL").unwrap_or_else(|| provider.default_model().to_owned());
    Some(LlmClient::new(provider, base_url, key, model))
}

fn build_http_client() -> Result<reqwest::Client, String> {
    static RING: Once = Once::new();
    RING.call_once(|| {
        // reqwest is built without a crypto provider (aws-lc-rs is slow to build), so rustls
        // needs one installed before a client is built. An error means the application
        // installed its own first; that choice stands.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        // No idle pool: it runs a timer, and a pending timer lets tokio's paused clock (tests)
        // jump while a request waits on its socket. One TLS handshake per call is nothing
        // next to a model's latency.
        .pool_idle_timeout(None)
        .pool_max_idle_per_host(0)
        // The step owns retries, so that one attempt is one request, its class decides the
        // wait, and the journal's attempt count is the number of requests sent.
        .retry(reqwest::retry::never())
        .build()
        .map_err(|e| {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            message
        })
}

/// The input and output tokens of a response.
fn read_usage(provider: Provider, value: &Value) -> Result<(u64, u64), String> {
    let (input, output) = match provider {
        Provider::Anthropic => ("input_tokens", "output_tokens"),
        Provider::OpenAi => ("prompt_tokens", "completion_tokens"),
    };
    let count = |field: &str| {
        value
            .pointer(&format!("/usage/{field}"))
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("`usage.{field}` is missing or not a count"))
    };
    Ok((count(input)?, count(output)?))
}

/// The generated text of a response.
fn read_text(provider: Provider, value: &Value) -> Result<String, String> {
    match provider {
        Provider::Anthropic => {
            let blocks = value
                .get("content")
                .and_then(Value::as_array)
                .ok_or("`content` is missing or not an array")?;
            // A reply may interleave text with other blocks (tool use, thinking): the answer
            // is its text blocks, in order.
            let texts: Vec<&str> = blocks
                .iter()
                .filter(|block| block.get("type").and_then(Value::as_str) == Some("text"))
                .map(|block| block.get("text").and_then(Value::as_str))
                .collect::<Option<_>>()
                .ok_or("a `content[]` block of type \"text\" has no string `text`")?;
            if texts.is_empty() {
                return Err("`content[]` has no block of type \"text\"".to_owned());
            }
            Ok(texts.concat())
        }
        Provider::OpenAi => {
            let message = value
                .pointer("/choices/0/message")
                .ok_or("`choices[0].message` is missing")?;
            match message.get("content").and_then(Value::as_str) {
                Some(text) => Ok(text.to_owned()),
                None => {
                    let refusal = message.get("refusal").and_then(Value::as_str);
                    Err(match refusal {
                        Some(refusal) => format!(
                            "`choices[0].message.content` is missing; the model refused: {}",
                            excerpt(refusal)
                        ),
                        None => "`choices[0].message.content` is missing or not a string".into(),
                    })
                }
            }
        }
    }
}

/// What an error response says: both providers put it in `error.message`; anything else (a
/// proxy's page) is shown as an excerpt.
fn error_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.pointer("/error/message")?.as_str().map(str::to_owned));
    match message {
        Some(message) => excerpt(&message),
        None if text.trim().is_empty() => "(empty body)".to_owned(),
        None => excerpt(&text),
    }
}

/// `text` on one line, cut to [`EXCERPT_CHARS`] characters.
fn excerpt(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_environment_picks_anthropic_first_then_openai_then_nothing() {
        let both = [("ANTHROPIC_API_KEY", "a"), ("OPENAI_API_KEY", "o")];
        let client = from_lookup(lookup(&both)).unwrap();
        assert_eq!(client.provider(), Provider::Anthropic);
        assert_eq!(client.model(), "claude-sonnet-4-5");
        assert_eq!(client.base_url, "https://api.anthropic.com");
        assert_eq!(client.api_key, "a");

        let openai = [("ANTHROPIC_API_KEY", " "), ("OPENAI_API_KEY", "o")];
        let client = from_lookup(lookup(&openai)).unwrap();
        assert_eq!(client.provider(), Provider::OpenAi);
        assert_eq!(client.model(), "gpt-4o-mini");
        assert_eq!(client.base_url, "https://api.openai.com");

        assert!(from_lookup(lookup(&[])).is_none());
        assert!(from_lookup(lookup(&[("OPENAI_API_KEY", "")])).is_none());
    }

    #[test]
    fn base_url_and_model_can_be_overridden() {
        let vars = [
            ("OPENAI_API_KEY", "o"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1/"),
            ("ANTHROPIC_BASE_URL", "http://ignored"),
            ("LLM_MODEL", "gpt-4.1"),
        ];
        let client = from_lookup(lookup(&vars)).unwrap();
        assert_eq!(client.base_url, "http://127.0.0.1:8080");
        assert_eq!(client.model(), "gpt-4.1");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let client = LlmClient::new(Provider::Anthropic, "http://x", "sk-secret", "m");
        let shown = format!("{client:?}");
        assert!(!shown.contains("sk-secret"), "{shown}");
        assert!(shown.contains("Anthropic"), "{shown}");
    }

    #[test]
    fn excerpts_are_one_line_and_short() {
        assert_eq!(excerpt("a\n  b\tc"), "a b c");
        let long = "é".repeat(EXCERPT_CHARS + 10);
        assert_eq!(excerpt(&long).chars().count(), EXCERPT_CHARS + 3);
        let api = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(error_excerpt(api), "Overloaded");
        assert_eq!(error_excerpt(b""), "(empty body)");
    }

    #[test]
    fn a_missing_field_is_named() {
        let no_usage = json!({ "content": [{ "type": "text", "text": "hi" }] });
        assert_eq!(
            read_usage(Provider::Anthropic, &no_usage).unwrap_err(),
            "`usage.input_tokens` is missing or not a count"
        );
        let tool_only = json!({ "content": [{ "type": "tool_use", "id": "t" }] });
        assert!(
            read_text(Provider::Anthropic, &tool_only)
                .unwrap_err()
                .contains("no block of type \"text\"")
        );
        let refused = json!({ "choices": [{ "message": { "content": null, "refusal": "no" } }] });
        assert!(
            read_text(Provider::OpenAi, &refused)
                .unwrap_err()
                .contains("refused: no")
        );
        let two_blocks = json!({ "content": [
            { "type": "text", "text": "a" }, { "type": "tool_use" }, { "type": "text", "text": "b" }
        ] });
        assert_eq!(read_text(Provider::Anthropic, &two_blocks).unwrap(), "ab");
    }
}
