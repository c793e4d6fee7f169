//! The determinism checks of a workflow body: what they report, where, what they let through,
//! and the escape hatch.

use super::{workflow, workflow_body};

const ALLOW: &str =
    " (if replaying it is harmless, mark the statement `#[allow_nondeterministic]`)";

/// The one error `body` gets, as `(message without the escape-hatch suffix, text under it)`.
#[track_caller]
fn single_error(body: &str) -> (String, String) {
    let expansion = workflow_body(body);
    assert_eq!(
        expansion.errors.len(),
        1,
        "for {body}: {:#?}",
        expansion.errors
    );
    let (message, at) = expansion.errors[0].clone();
    let message = message
        .strip_suffix(ALLOW)
        .unwrap_or_else(|| panic!("no escape hatch in {message:?}"))
        .to_owned();
    (message, at)
}

#[track_caller]
fn assert_reported(body: &str, message_start: &str, at: &str) {
    let (message, text) = single_error(body);
    assert!(
        message.starts_with(message_start),
        "for {body}: {message:?} does not start with {message_start:?}"
    );
    assert_eq!(text, at, "for {body}");
}

#[track_caller]
fn assert_accepted(body: &str) {
    workflow_body(body).assert_no_errors();
}

#[test]
fn each_kind_names_the_call_and_the_alternative() {
    let now = "which gives another time when the workflow is replayed; use `workflow_runtime::durable::now().await`, which journals the time";
    for (body, message, at) in [
        ("let t = std::time::SystemTime::now(); Ok(1)", format!("`std::time::SystemTime::now` reads the clock, {now}"), "std::time::SystemTime::now"),
        ("let t = Instant::now(); Ok(1)", format!("`Instant::now` reads the clock, {now}"), "Instant::now"),
        ("let t = chrono::Utc::now(); Ok(1)", format!("`chrono::Utc::now` reads the clock, {now}"), "chrono::Utc::now"),
        (
            "let n: u8 = rand::random(); Ok(1)",
            "`rand::random` draws a random number, which differs when the workflow is replayed; use `workflow_runtime::durable::random().await`, which journals it".to_owned(),
            "rand::random",
        ),
        (
            "let id = Uuid::new_v4(); Ok(1)",
            "`Uuid::new_v4` makes a random id, which differs when the workflow is replayed; use `workflow_runtime::durable::uuid().await`, which journals it".to_owned(),
            "Uuid::new_v4",
        ),
        (
            "tokio::spawn(async {}); Ok(1)",
            "`tokio::spawn` runs work outside the workflow's task, where steps are not journaled and nothing is replayed; start a child workflow with `workflow_runtime::durable::child::<W>(input).await`, or await steps together with `join_all`".to_owned(),
            "tokio::spawn",
        ),
        (
            "tokio::time::sleep(d).await; Ok(1)",
            "`tokio::time::sleep` is a timer that starts over on every replay and is lost in a crash; use `workflow_runtime::durable::sleep(duration).await`, whose wake-up time is journaled".to_owned(),
            "tokio::time::sleep",
        ),
        (
            "let r = tokio::time::timeout(d, f()).await; Ok(1)",
            "`tokio::time::timeout` races the clock, which can end another way when the workflow is replayed; give the step a timeout instead, like `#[step(timeout = \"60s\")]`".to_owned(),
            "tokio::time::timeout",
        ),
        (
            "let s = std::fs::read_to_string(p)?; Ok(1)",
            "`std::fs::read_to_string` reaches outside the program (files, network, processes), which can answer differently when the workflow is replayed; do it inside a `#[step]`, whose result is journaled".to_owned(),
            "std::fs::read_to_string",
        ),
        (
            "let v = env::var(\"KEY\")?; Ok(1)",
            "`env::var` reads the environment, which can differ in the process that resumes the workflow; read it inside a `#[step]`, whose result is journaled, or pass it as an argument".to_owned(),
            "env::var",
        ),
    ] {
        assert_eq!(single_error(body), (message, at.to_owned()), "for {body}");
    }
}

#[test]
fn the_paths_recognised() {
    let clock = "reads the clock";
    let random = "draws a random number";
    let spawn = "runs work outside the workflow's task";
    let timer = "is a timer";
    let io = "reaches outside the program";
    for (call, what) in [
        ("SystemTime::now()", clock),
        ("tokio::time::Instant::now()", clock),
        ("Local::now()", clock),
        ("time::OffsetDateTime::now_utc()", clock),
        ("thread_rng()", random),
        ("rand::rng()", random),
        ("fastrand::u64(..)", random),
        ("StdRng::from_entropy()", random),
        ("task::spawn(f)", spawn),
        ("spawn_blocking(f)", spawn),
        ("std::thread::spawn(f)", spawn),
        ("time::sleep(d)", timer),
        ("std::thread::sleep(d)", timer),
        ("tokio::time::interval(d)", timer),
        ("fs::write(p, b)", io),
        ("tokio::fs::read(p)", io),
        ("File::open(p)", io),
        ("TcpStream::connect(a)", io),
        ("reqwest::Client::new()", io),
        ("Command::new(\"ls\")", io),
    ] {
        let path = call.split('(').next().unwrap();
        let (message, at) = single_error(&format!("let x = {call}; Ok(1)"));
        assert!(
            message.starts_with(&format!("`{path}` {what}")),
            "{call}: {message}"
        );
        assert_eq!(at, path);
    }
}

#[test]
fn look_alikes_are_accepted() {
    // The runtime's durable versions, and names that only resemble a flagged path.
    assert_accepted(
        "let t = durable::now().await;
         let r = durable::random().await;
         let id = workflow_runtime::durable::uuid().await;
         durable::sleep(d).await;
         sleep(d).await;
         let n = now();
         let m = my::random();
         let s = spawn_agent();
         let c = config.env.var;
         Ok(1)",
    );
}

#[test]
fn method_calls_that_spawn() {
    assert_reported(
        "let mut set = JoinSet::new(); set.spawn(async {}); Ok(1)",
        "`.spawn(..)` runs work outside the workflow's task",
        "set.spawn",
    );
}

#[test]
fn hash_map_iteration() {
    let map = "iterating the `HashMap` `m` visits its entries in an order that differs between processes, so a replay can take another path; use a `BTreeMap`, or collect the entries and sort them first";
    let set = "iterating the `HashSet` `s` visits its entries in an order that differs between processes, so a replay can take another path; use a `BTreeSet`, or collect the entries and sort them first";
    for (body, message, at) in [
        (
            "let m = HashMap::new(); for (k, v) in &m {} Ok(1)",
            map,
            "&m",
        ),
        (
            "let m: HashMap<u8, u8> = build(); for kv in m {} Ok(1)",
            map,
            "m",
        ),
        (
            "let m = HashMap::new(); for k in m.keys() {} Ok(1)",
            map,
            "m.keys",
        ),
        (
            "let m = HashMap::new(); let first = m.iter().next(); Ok(1)",
            map,
            "m.iter",
        ),
        (
            "let m = HashMap::new(); m.values().for_each(drop); Ok(1)",
            map,
            "m.values",
        ),
        (
            "let s: HashSet<_> = v.into_iter().collect(); for x in &mut s {} Ok(1)",
            set,
            "&mut s",
        ),
    ] {
        assert_eq!(
            single_error(body),
            (message.to_owned(), at.to_owned()),
            "for {body}"
        );
    }
    // An argument's declared type counts too.
    let expansion = workflow(
        "",
        "async fn w(m: std::collections::HashMap<String, u8>) -> anyhow::Result<u8> { for x in &m {} Ok(1) }",
    );
    assert_eq!(expansion.errors.len(), 1, "{:#?}", expansion.errors);
}

#[test]
fn hash_map_uses_that_do_not_depend_on_the_order() {
    assert_accepted(
        "let m = HashMap::new();
         let x = m.get(&1);
         let n = m.len();
         let mut keys: Vec<_> = m.keys().copied().collect();
         keys.sort();
         let total: u32 = m.values().sum();
         let any = m.values().any(|v| *v > 1);
         let sorted: BTreeMap<_, _> = m.into_iter().collect();
         for (k, v) in &sorted {}
         let v = vec![1, 2];
         for x in &v {}
         Ok(1)",
    );
    // A later binding of the name that is not a HashMap shadows it.
    assert_accepted("let m = HashMap::new(); let m = to_vec(m); for x in &m {} Ok(1)");
}

#[test]
fn steps_are_not_checked() {
    // A step runs once and its outcome is journaled, whatever its arguments read.
    assert_accepted(
        "#[step] let a = fetch(SystemTime::now()).await?;
         let b = #[step] fetch(Instant::now()).await;
         #[step] notify(std::env::var(\"X\").ok()).await?;
         Ok(1)",
    );
}

#[test]
fn nested_items_are_not_checked() {
    // Not the workflow body: a helper is called from anywhere (a known blind spot).
    assert_accepted("fn helper() -> Instant { Instant::now() } Ok(1)");
}

#[test]
fn closures_async_blocks_and_macro_arguments_are_checked() {
    assert_reported(
        "let f = || Instant::now(); Ok(1)",
        "`Instant::now` reads the clock",
        "Instant::now",
    );
    assert_reported(
        "let f = async { tokio::time::sleep(d).await }; Ok(1)",
        "`tokio::time::sleep` is a timer",
        "tokio::time::sleep",
    );
    assert_reported(
        "println!(\"{:?}\", SystemTime::now()); Ok(1)",
        "`SystemTime::now` reads the clock",
        "SystemTime::now",
    );
    assert_reported(
        "let s = format!(\"{}\", rand::random::<u8>()); Ok(1)",
        "`rand::random::<u8>` draws a random number",
        "rand::random::<u8>",
    );
    // A macro whose arguments are not expressions is not looked into.
    assert_accepted("let v = vec![Instant::now(); 2]; Ok(1)");
}

#[test]
fn select_is_reported_at_its_path() {
    let random = "picks a random ready branch, so a resumed run could take another path; use `workflow_runtime::durable::race(a, b)` (or `race_all`), which is deterministic";
    let biased = "keeps its branches from the workflow's determinism checks, so a timer or a spawn in one goes unseen; use `workflow_runtime::durable::race(a, b)` (or `race_all`), which polls in the same order and whose futures are checked";
    for (body, message, at) in [
        (
            "tokio::select! { _ = a => {} } Ok(1)",
            format!("`tokio::select!` {random}"),
            "tokio::select",
        ),
        (
            "let x = futures::select! { x = a => x, y = b => y }; Ok(x)",
            format!("`futures::select!` {random}"),
            "futures::select",
        ),
        (
            "select! { _ = a => {} } Ok(1)",
            format!("`select!` {random}"),
            "select",
        ),
        (
            "println!(\"{}\", tokio::select! { x = a => x }); Ok(1)",
            format!("`tokio::select!` {random}"),
            "tokio::select",
        ),
        (
            "futures::select_biased! { _ = a => {} } Ok(1)",
            format!("`futures::select_biased!` {biased}"),
            "futures::select_biased",
        ),
        (
            "tokio::select! { biased; _ = a => {} } Ok(1)",
            format!("`tokio::select!` {biased}"),
            "tokio::select",
        ),
    ] {
        assert_eq!(single_error(body), (message, at.to_owned()), "for {body}");
    }
}

#[test]
fn select_is_accepted_where_other_calls_are() {
    assert_accepted(
        "#[allow_nondeterministic] tokio::select! { _ = a => {} }
         let x = #[allow_nondeterministic] futures::select_biased! { x = a => x };
         #[step] let y = f(tokio::select! { x = a => x }).await?;
         Ok(1)",
    );
    // The deterministic races, and `futures::future::select`, which polls in order like
    // `durable::race` and whose arguments are checked.
    assert_accepted(
        "let a = durable::race(f(), g()).await;
         let (i, b) = workflow_runtime::durable::race_all(v).await;
         let c = futures::future::select(f(), g()).await;
         let d = future::select_all(v).await;
         let e = my::selection!(a);
         Ok(1)",
    );
    assert_reported(
        "let c = futures::future::select(f(), tokio::time::sleep(d)).await; Ok(1)",
        "`tokio::time::sleep` is a timer",
        "tokio::time::sleep",
    );
}

#[test]
fn the_escape_hatch_accepts_and_disappears() {
    let expansion = workflow_body(
        "#[allow_nondeterministic] let t = Instant::now();
         let u = #[allow_nondeterministic] SystemTime::now();
         #[allow_nondeterministic] println!(\"{:?}\", Instant::now());
         #[allow_nondeterministic] for x in &m {}
         #[step] let x = f(#[allow_nondeterministic] Instant::now()).await?;
         Ok(1)",
    );
    expansion.assert_no_errors();
    expansion.assert_lacks("allow_nondeterministic");
    // Only what it marks.
    assert_reported(
        "#[allow_nondeterministic] let t = Instant::now(); let u = Instant::now(); Ok(1)",
        "`Instant::now` reads the clock",
        "Instant::now",
    );
    workflow_body("#[allow_nondeterministic(reason = \"logs\")] let t = Instant::now(); Ok(1)")
        .assert_errors(&[(
            "`#[allow_nondeterministic]` takes no arguments; say why in a comment above it",
            "allow_nondeterministic(reason = \"logs\")",
        )]);
}

#[test]
fn every_call_is_reported() {
    let expansion = workflow_body(
        "let a = Instant::now(); let b = rand::random::<u8>(); tokio::spawn(f()); Ok(1)",
    );
    let at: Vec<&str> = expansion.errors.iter().map(|(_, at)| at.as_str()).collect();
    assert_eq!(at, ["Instant::now", "rand::random::<u8>", "tokio::spawn"]);
}

#[test]
fn suggestions_name_the_runtime_as_the_crate_does() {
    let expansion = workflow(
        "crate = \"::renamed\"",
        "async fn w() -> anyhow::Result<u8> { let t = Instant::now(); Ok(1) }",
    );
    assert!(
        expansion.errors[0]
            .0
            .contains("use `renamed::durable::now().await`"),
        "{:#?}",
        expansion.errors
    );
}

/// Regression: `use tokio::time::sleep;` then `sleep(d).await` in a body compiled, unseen (the
/// macro sees the body, not the `use`). A bare name that could be the runtime's or tokio's is
/// judged by its type: the call is wrapped in the probe; a path a rule reports, or a call the
/// escape hatch marks, is not.
#[test]
fn calls_whose_name_does_not_say_whose_they_are_are_judged_by_type() {
    const PROBE: &str = "::workflow_runtime::__private::NotATokioTimer::check";
    for body in [
        "sleep(d).await; Ok(1)",
        "let h = spawn(work()); Ok(1)",
        "let r = timeout(d, work()).await; Ok(1)",
        "durable::sleep(d).await; Ok(1)",
    ] {
        let expansion = workflow_body(body);
        expansion.assert_no_errors();
        assert!(
            super::canonical(expansion.tokens.clone())
                .contains(&super::canonical(super::tokens(PROBE))),
            "{body} is not probed"
        );
    }
    for body in [
        "sleep_well(d).await; Ok(1)",
        "#[allow_nondeterministic] sleep(d).await; Ok(1)",
        "let x = self::helper(d); Ok(1)",
    ] {
        let expansion = workflow_body(body);
        expansion.assert_no_errors();
        expansion.assert_lacks(PROBE);
    }
    assert_reported(
        "tokio::time::sleep(d).await; Ok(1)",
        "`tokio::time::sleep` is a timer",
        "tokio::time::sleep",
    );
    workflow_body("tokio::time::sleep(d).await; Ok(1)").assert_lacks(PROBE);
}
