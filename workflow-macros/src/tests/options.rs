//! Attribute options: unknown keys, duplicates, literal validation.

use std::time::Duration;

use super::{step, tokens, workflow};
use crate::ctxt::Ctxt;
use crate::parse::{
    self, BACKOFF_FIELDS, BackoffValue, CRATE_OPTION, STEP_OPTIONS, Value, WORKFLOW_OPTIONS,
};

const STEP_FN: &str = "async fn fetch(url: String) -> anyhow::Result<String> { todo!() }";
const WORKFLOW_FN: &str = "async fn agent(goal: String) -> anyhow::Result<String> { todo!() }";
const STEP_LIST: &str = "valid options: `name`, `retries`, `timeout`, `backoff`, `circuit`, `rate`, `at_most_once`, `non_retryable`, `crate`";

/// `(message, source text the error points at)`.
type Errors = Vec<(String, String)>;

/// Parses step options, returning the valid ones as `(key, value)` and the errors.
fn step_options(args: &str) -> (Vec<(String, Value)>, Errors) {
    let ctxt = Ctxt::new();
    let parsed = parse::parse_options(tokens(args), &[STEP_OPTIONS, CRATE_OPTION], &ctxt);
    let parsed = parsed
        .into_iter()
        .map(|option| (option.key.to_string(), option.value))
        .collect();
    let errors = ctxt
        .into_errors()
        .into_iter()
        .map(|e| (e.to_string(), e.span().source_text().unwrap_or_default()))
        .collect();
    (parsed, errors)
}

#[track_caller]
fn assert_step_error(args: &str, message: &str, at: &str) {
    let (_, errors) = step_options(args);
    assert_eq!(
        errors,
        vec![(message.to_owned(), at.to_owned())],
        "for {args}"
    );
}

#[test]
fn unknown_option_suggests_the_nearest_and_lists_the_valid_ones() {
    step("retry = 3", STEP_FN).assert_errors(&[(
        "unknown option `retry`; did you mean `retries`? valid options: `name`, `retries`, `timeout`, `backoff`, `circuit`, `rate`, `at_most_once`, `non_retryable`, `crate`",
        "retry",
    )]);
    step("timout = \"1s\"", STEP_FN).assert_errors(&[(
        "unknown option `timout`; did you mean `timeout`? valid options: `name`, `retries`, `timeout`, `backoff`, `circuit`, `rate`, `at_most_once`, `non_retryable`, `crate`",
        "timout",
    )]);
    workflow("max_step = 3", WORKFLOW_FN).assert_errors(&[(
        "unknown option `max_step`; did you mean `max_steps`? valid options: `name`, `version`, `max_steps`, `max_cost_usd`, `max_tokens`, `max_duration`, `max_in_flight_steps`, `concurrency`, `crate`",
        "max_step",
    )]);
    workflow("max_cost = 3", WORKFLOW_FN).assert_errors(&[(
        "unknown option `max_cost`; did you mean `max_cost_usd`? valid options: `name`, `version`, `max_steps`, `max_cost_usd`, `max_tokens`, `max_duration`, `max_in_flight_steps`, `concurrency`, `crate`",
        "max_cost",
    )]);
}

#[test]
fn unknown_option_without_a_near_match_only_lists() {
    step("priority = 3", STEP_FN).assert_errors(&[(
        "unknown option `priority`; valid options: `name`, `retries`, `timeout`, `backoff`, `circuit`, `rate`, `at_most_once`, `non_retryable`, `crate`",
        "priority",
    )]);
}

#[test]
fn nearest_prefers_the_smallest_edit_distance() {
    let keys = ["name", "max_steps", "max_cost_usd", "max_tokens", "crate"];
    assert_eq!(
        parse::nearest("max_token", keys.into_iter()),
        Some("max_tokens")
    );
    assert_eq!(parse::nearest("nmae", keys.into_iter()), Some("name"));
    assert_eq!(parse::nearest("krate", keys.into_iter()), Some("crate"));
    assert_eq!(
        parse::nearest("tokens", keys.into_iter()),
        Some("max_tokens")
    );
    assert_eq!(parse::nearest("deadline", keys.into_iter()), None);
}

#[test]
fn duplicate_is_reported_at_the_second_occurrence() {
    let (parsed, errors) = step_options("retries = 1, timeout = \"1s\", retries = 2");
    assert_eq!(
        errors,
        vec![(
            "duplicate option `retries`".to_owned(),
            "retries".to_owned()
        )]
    );
    // The first occurrence stands; the duplicate is dropped.
    assert_eq!(parsed[0], ("retries".to_owned(), Value::U32(1)));
    assert_eq!(parsed.len(), 2);
    // The span is the second key's: it is the one after `timeout`.
    let ctxt = Ctxt::new();
    let args = tokens("retries = 1, retries = 2");
    let second = args.clone().into_iter().nth(4).unwrap().span();
    parse::parse_options(args, &[STEP_OPTIONS], &ctxt);
    let error = ctxt.into_errors().remove(0);
    assert_eq!(error.span().start(), second.start());
}

#[test]
fn every_error_is_reported_together() {
    let (parsed, errors) =
        step_options("retry = 3, timeout = 60, name = \"\", retries = -1, retries = \"3\"");
    assert!(parsed.is_empty());
    let messages: Vec<&str> = errors.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(messages.len(), 5, "{messages:#?}");
}

#[test]
fn timeout_parses_humantime_at_expansion_time() {
    for (text, expected) in [
        ("60s", Duration::from_secs(60)),
        ("1m 30s", Duration::from_secs(90)),
        ("500ms", Duration::from_millis(500)),
        ("2h", Duration::from_secs(7200)),
        ("1s 5ns", Duration::new(1, 5)),
    ] {
        let (parsed, errors) = step_options(&format!("timeout = {text:?}"));
        assert!(errors.is_empty(), "{text}: {errors:?}");
        assert_eq!(
            parsed,
            vec![("timeout".to_owned(), Value::Duration(expected))]
        );
    }
}

#[test]
fn bad_timeouts_say_how_to_write_one() {
    assert_step_error(
        "timeout = 60",
        "`timeout` takes a duration string with a unit: `timeout = \"60s\"`",
        "60",
    );
    assert_step_error(
        "timeout = \"0s\"",
        "`timeout` must be greater than zero; a zero timeout fails every attempt at once (leave `timeout` out for no limit)",
        "\"0s\"",
    );
    assert_step_error(
        "timeout = \"sixty\"",
        "invalid duration \"sixty\" for `timeout`: expected number at 0; write it like \"60s\", \"1m 30s\" or \"500ms\"",
        "\"sixty\"",
    );
    assert_step_error(
        "timeout = \"60\"",
        "invalid duration \"60\" for `timeout`: time unit needed, for example 60sec or 60ms; write it like \"60s\", \"1m 30s\" or \"500ms\"",
        "\"60\"",
    );
    assert_step_error(
        "timeout = SIXTY",
        "`timeout` takes a duration string, like `timeout = \"60s\"` or `timeout = \"1m 30s\"`",
        "SIXTY",
    );
}

#[test]
fn retries_is_a_small_non_negative_integer() {
    let (parsed, _) = step_options("retries = 3");
    assert_eq!(parsed, vec![("retries".to_owned(), Value::U32(3))]);
    let (parsed, _) = step_options("retries = 100");
    assert_eq!(parsed, vec![("retries".to_owned(), Value::U32(100))]);
    assert_step_error(
        "retries = -1",
        "`retries` cannot be negative; it takes an integer from 0 to 100, like `retries = 3`",
        "-1",
    );
    assert_step_error(
        "retries = \"3\"",
        "`retries` takes an integer, not a string: `retries = 3`",
        "\"3\"",
    );
    assert_step_error(
        "retries = 101",
        "`retries` must be at most 100; more is almost always a mistake, and each retry of a paid call costs money",
        "101",
    );
    assert_step_error(
        "retries = 1.5",
        "`retries` takes an integer from 0 to 100, like `retries = 3`",
        "1.5",
    );
    assert_step_error(
        "retries",
        "`retries` takes a value: `retries = 3`",
        "retries",
    );
    assert_step_error(
        "retries(3)",
        "`retries` takes a value: `retries = 3`",
        "retries(3)",
    );
}

#[test]
fn switches_are_bare_or_boolean() {
    let (parsed, errors) = step_options("at_most_once, non_retryable = false");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        parsed,
        vec![
            ("at_most_once".to_owned(), Value::Flag(true)),
            ("non_retryable".to_owned(), Value::Flag(false)),
        ]
    );
    // A switch that is off calls nothing.
    let expansion = step(
        "at_most_once = true, non_retryable = false, circuit = \"payments\"",
        STEP_FN,
    );
    expansion.assert_no_errors();
    expansion.assert_contains(
        "::workflow_runtime::__private::step(\"fetch\").at_most_once().circuit(\"payments\")",
    );
    assert_step_error(
        "at_most_once = 1",
        "`at_most_once` is a switch: write `at_most_once` or `at_most_once = true`",
        "1",
    );
    assert_step_error(
        "at_most_once(true)",
        "`at_most_once` takes a value: `at_most_once = true`",
        "at_most_once(true)",
    );
}

#[test]
fn names_are_non_empty_strings() {
    let (parsed, _) = step_options("name = \"fetch-page\"");
    assert!(matches!(&parsed[0].1, Value::Str(s) if s.value() == "fetch-page"));
    assert_step_error("name = \" \"", "`name` cannot be empty", "\" \"");
    assert_step_error(
        "name = fetch",
        "`name` takes a string literal: `name = \"fetch\"`",
        "fetch",
    );
}

#[test]
fn crate_is_a_path_in_a_string() {
    let (parsed, errors) = step_options("crate = \"::my::runtime\"");
    assert!(errors.is_empty());
    assert_eq!(
        parsed,
        vec![(
            "crate".to_owned(),
            Value::Path(syn::parse_quote!(::my::runtime))
        )]
    );
    assert_step_error(
        "crate = my_runtime",
        "`crate` takes the path as a string: `crate = \"my_runtime\"`",
        "my_runtime",
    );
    assert_step_error(
        "crate = \"not a path\"",
        "\"not a path\" is not a path; `crate` takes the path of the runtime crate as this crate names it, like `crate = \"::workflow_runtime\"` or `crate = \"my_runtime\"`",
        "\"not a path\"",
    );
}

#[test]
fn workflow_budget_options() {
    let expansion = workflow(
        "max_steps = 50, max_cost_usd = 2.00, max_tokens = 1, max_duration = \"10m\", max_in_flight_steps = 8",
        WORKFLOW_FN,
    );
    expansion.assert_no_errors();
    expansion.assert_contains(
        "::workflow_runtime::Budget::UNLIMITED.with_max_steps(50u64).with_max_cost_usd(2f64).with_max_tokens(1u64)\
         .with_max_duration(::core::time::Duration::new(600u64, 0u32)).with_max_in_flight_steps(8u32)",
    );
    let expansion = workflow("max_cost_usd = 3", WORKFLOW_FN);
    expansion.assert_contains(".with_max_cost_usd(3f64)");

    workflow("max_steps = 0", WORKFLOW_FN).assert_errors(&[(
        "`max_steps` must be at least 1: a run with no steps allowed would fail at its first step",
        "0",
    )]);
    workflow("max_tokens = 0", WORKFLOW_FN).assert_errors(&[(
        "`max_tokens` must be at least 1: zero would stop every run before it starts",
        "0",
    )]);
    for negative in ["-1.5", "- 1.5"] {
        workflow(&format!("max_cost_usd = {negative}"), WORKFLOW_FN).assert_errors(&[(
            "`max_cost_usd` cannot be negative; it takes a number like `max_cost_usd = 2.50`",
            negative,
        )]);
    }
    workflow("max_cost_usd = \"2\"", WORKFLOW_FN).assert_errors(&[(
        "`max_cost_usd` takes a number, not a string: `max_cost_usd = 2`",
        "\"2\"",
    )]);
    workflow("max_cost_usd = two", WORKFLOW_FN).assert_errors(&[(
        "`max_cost_usd` takes a number, like `max_cost_usd = 2.50`",
        "two",
    )]);
    workflow("max_tokens = 1e3", WORKFLOW_FN).assert_errors(&[(
        "`max_tokens` takes an integer of at least 1, like `max_tokens = 200_000`",
        "1e3",
    )]);
    workflow("max_duration = 600", WORKFLOW_FN).assert_errors(&[(
        "`max_duration` takes a duration string with a unit: `max_duration = \"600s\"`",
        "600",
    )]);
    workflow("max_in_flight_steps = 5000000000", WORKFLOW_FN).assert_errors(&[(
        "`max_in_flight_steps` must be at most 4294967295",
        "5000000000",
    )]);
}

#[test]
fn concurrency_becomes_the_workflow_concurrency() {
    let expansion = workflow("concurrency = 4", WORKFLOW_FN);
    expansion.assert_no_errors();
    expansion.assert_contains(
        "fn concurrency() -> ::core::option::Option<u32> { ::core::option::Option::Some(4u32) }",
    );
    // Unset, the trait's default applies.
    workflow("", WORKFLOW_FN).assert_lacks("fn concurrency()");
    workflow("concurrency = 0", WORKFLOW_FN).assert_errors(&[(
        "`concurrency` must be at least 1: zero would stop every run before it starts",
        "0",
    )]);
    // A workflow option, not a step's.
    assert_step_error(
        "concurrency = 4",
        &format!("unknown option `concurrency`; {STEP_LIST}"),
        "concurrency",
    );
}

#[test]
fn version_becomes_the_workflow_version() {
    let expansion = workflow("name = \"purchase\", version = 2", WORKFLOW_FN);
    expansion.assert_no_errors();
    expansion.assert_contains("const NAME: &'static str = \"purchase\";");
    expansion.assert_contains("const VERSION: ::core::primitive::u32 = 2u32;");
    // Unset, the trait's default (1) applies.
    workflow("", WORKFLOW_FN).assert_lacks("const VERSION");
    workflow("version = 0", WORKFLOW_FN).assert_errors(&[(
        "`version` must be at least 1: versions count from 1, the version of a workflow written without `version`",
        "0",
    )]);
    workflow("version = \"2\"", WORKFLOW_FN).assert_errors(&[(
        "`version` takes an integer, not a string: `version = 2`",
        "\"2\"",
    )]);
    workflow("version = 2.5", WORKFLOW_FN).assert_errors(&[(
        "`version` takes an integer of at least 1, like `version = 2`",
        "2.5",
    )]);
    workflow("version = -1", WORKFLOW_FN).assert_errors(&[(
        "`version` cannot be negative; it takes an integer of at least 1, like `version = 2`",
        "-1",
    )]);
    workflow("version = 5000000000", WORKFLOW_FN)
        .assert_errors(&[("`version` must be at most 4294967295", "5000000000")]);
    // Reported at the second, and the first still applies.
    let twice = workflow("version = 2, name = \"purchase\", version = 3", WORKFLOW_FN);
    twice.assert_errors(&[("duplicate option `version`", "version")]);
    twice.assert_contains("const VERSION: ::core::primitive::u32 = 2u32;");
    workflow("versoin = 2", WORKFLOW_FN).assert_errors(&[(
        "unknown option `versoin`; did you mean `version`? valid options: `name`, `version`, `max_steps`, `max_cost_usd`, `max_tokens`, `max_duration`, `max_in_flight_steps`, `concurrency`, `crate`",
        "versoin",
    )]);
    // A workflow option, not a step's.
    assert_step_error(
        "version = 2",
        &format!("unknown option `version`; {STEP_LIST}"),
        "version",
    );
}

#[test]
fn rate_names_a_bucket() {
    let expansion = step("rate = \"llm\"", STEP_FN);
    expansion.assert_no_errors();
    expansion.assert_contains("::workflow_runtime::__private::step(\"fetch\").rate(\"llm\")");
    assert_step_error("rate = \"\"", "`rate` cannot be empty", "\"\"");
    assert_step_error(
        "rate = llm",
        "`rate` takes a string literal: `rate = \"llm\"`",
        "llm",
    );
}

#[test]
fn backoff_fields_are_optional_and_checked() {
    let (parsed, errors) =
        step_options("backoff(initial = \"1s\", factor = 2.0, max = \"30s\", jitter = 0.1)");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        parsed,
        vec![(
            "backoff".to_owned(),
            Value::Backoff(BackoffValue {
                initial: Some(Duration::from_secs(1)),
                factor: Some(2.0),
                max: Some(Duration::from_secs(30)),
                jitter: Some(0.1),
            })
        )]
    );
    // The fields left out keep `Backoff::DEFAULT`'s.
    let expansion = step("backoff(initial = \"250ms\", jitter = 0)", STEP_FN);
    expansion.assert_no_errors();
    expansion.assert_contains(
        ".backoff(::workflow_runtime::Backoff::DEFAULT \
            .with_initial(::core::time::Duration::new(0u64, 250000000u32)) \
            .with_jitter(0f64))",
    );
    // Through a renamed runtime.
    step("crate = \"rt\", backoff(factor = 3)", STEP_FN)
        .assert_contains(".backoff(rt::Backoff::DEFAULT.with_factor(3f64))");

    assert_step_error(
        "backoff(fator = 2.0)",
        "unknown `backoff` field `fator`; did you mean `factor`? valid fields: `initial`, `factor`, `max`, `jitter`",
        "fator",
    );
    assert_step_error(
        "backoff(max = \"1s\", max = \"2s\")",
        "duplicate `backoff` field `max`",
        "max",
    );
    assert_step_error(
        "backoff(initial = 1)",
        "`initial` takes a duration string with a unit: `initial = \"1s\"`",
        "1",
    );
    assert_step_error(
        "backoff(factor = 0.5)",
        "`factor` must be from 1 to 10, like `factor = 2.0`",
        "0.5",
    );
    assert_step_error(
        "backoff(jitter = -0.1)",
        "`jitter` cannot be negative; it takes a number like `jitter = 0.1`",
        "-0.1",
    );
    assert_step_error(
        "backoff(initial = \"1m\", max = \"30s\")",
        "the longest wait, `max` (30s), is shorter than the first, `initial` (1m)",
        "\"30s\"",
    );
    assert_step_error(
        "backoff()",
        "`backoff()` sets nothing; give the fields that differ from the default, like `backoff(initial = \"1s\", factor = 2.0)`",
        "backoff",
    );
    assert_step_error(
        "backoff = \"1s\"",
        "`backoff` takes its fields in parentheses: `backoff(initial = \"1s\", factor = 2.0, max = \"30s\", jitter = 0.1)`",
        "\"1s\"",
    );
    assert_step_error(
        "backoff",
        "`backoff` takes its fields in parentheses: `backoff(initial = \"1s\", factor = 2.0, max = \"30s\", jitter = 0.1)`",
        "backoff",
    );
    // Every bad field is reported, and the option is dropped.
    let (parsed, errors) = step_options("backoff(fator = 2.0, jitter = 3)");
    assert!(parsed.is_empty());
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn a_bad_option_is_dropped_and_the_item_still_expands() {
    let expansion = workflow("max_steps = 0, name = \"agent-v1\"", WORKFLOW_FN);
    assert_eq!(expansion.errors.len(), 1);
    expansion.assert_contains("const NAME: &'static str = \"agent-v1\";");
    expansion.assert_contains(
        "fn budget() -> ::workflow_runtime::Budget { ::workflow_runtime::Budget::UNLIMITED }",
    );
}

#[test]
fn unparsable_arguments_are_one_error() {
    workflow("max_steps = 5 6", WORKFLOW_FN)
        .assert_errors(&[("`max_steps` takes one value, like `max_steps = 50`", "5 6")]);
    step("= 3", STEP_FN).assert_errors(&[("expected `option = value`", "=")]);
    step("retries = 1,, name = \"x\"", STEP_FN)
        .assert_errors(&[("expected `option = value`", ",")]);
    step("retries =", STEP_FN).assert_errors(&[("expected a value after `retries =`", "=")]);
    step("retries = 1 timeout = \"1s\"", STEP_FN).assert_errors(&[(
        "`retries` takes one value, like `retries = 3`",
        "1 timeout = \"1s\"",
    )]);
    workflow("max_steps: 10", WORKFLOW_FN).assert_errors(&[(
        "expected `=` after `max_steps`: options are written `max_steps = value`",
        ":",
    )]);
}

#[test]
fn the_option_tables_do_not_repeat_keys() {
    for table in [WORKFLOW_OPTIONS, STEP_OPTIONS, BACKOFF_FIELDS] {
        let mut keys: Vec<&str> = table.iter().chain(CRATE_OPTION).map(|d| d.key).collect();
        let count = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), count);
    }
}
