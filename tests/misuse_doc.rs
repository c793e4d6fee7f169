//! `workflow-runtime/src/misuse.md` lists every compile-fail case of `ui-tests/fail` with the
//! first line of what the compiler says about it. This test keeps the two in step: it fails
//! naming each case the document is missing, each entry whose message is not the case's first
//! line any more, and each entry whose case is gone.
//!
//! An entry is a list item that starts with the case's file name in backticks, followed by a
//! ```` ```text ```` block whose lines include the first `error` line of the case's `.stderr`:
//!
//! ````markdown
//! - `option-unknown.rs`: an unknown option.
//!   ```text
//!   error: unknown option `retry`; ...
//!   ```
//! ````

use std::collections::BTreeMap;
use std::path::Path;

/// The first line of each `ui-tests/fail/*.stderr` that starts with `error`, by case file name.
fn first_error_lines(dir: &Path) -> BTreeMap<String, Option<String>> {
    let mut cases = BTreeMap::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|ext| ext != "stderr") {
            continue;
        }
        let stderr =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let first = stderr
            .lines()
            .find(|line| line.starts_with("error"))
            .map(str::to_owned);
        let stem = path.file_stem().expect("a file name").to_string_lossy();
        cases.insert(format!("{stem}.rs"), first);
    }
    cases
}

/// The entries of the document: for each case named at the start of a list item, the lines of
/// the ```` ```text ```` blocks that follow it, up to the next entry.
fn documented(markdown: &str) -> BTreeMap<String, Vec<String>> {
    let mut entries: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    // Inside a fenced block: `Some(true)` for a ```` ```text ```` one.
    let mut fence: Option<bool> = None;
    for line in markdown.lines() {
        let trimmed = line.trim();
        if let Some(text) = fence {
            if trimmed == "```" {
                fence = None;
            } else if let (true, Some(case)) = (text, &current) {
                entries
                    .entry(case.clone())
                    .or_default()
                    .push(trimmed.to_owned());
            }
            continue;
        }
        if let Some(info) = trimmed.strip_prefix("```") {
            fence = Some(info == "text");
        } else if let Some(rest) = line.strip_prefix("- `")
            && let Some((name, _)) = rest.split_once('`')
            && name.ends_with(".rs")
        {
            entries.entry(name.to_owned()).or_default();
            current = Some(name.to_owned());
        } else if trimmed.starts_with('#') {
            // A heading ends the previous entry.
            current = None;
        }
    }
    entries
}

#[test]
fn misuse_doc_lists_every_compile_fail_case_with_its_first_error_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc_path = root.join("workflow-runtime/src/misuse.md");
    let markdown = std::fs::read_to_string(&doc_path)
        .unwrap_or_else(|e| panic!("{}: {e}", doc_path.display()));
    let cases = first_error_lines(&root.join("ui-tests/fail"));
    let entries = documented(&markdown);
    assert!(!cases.is_empty(), "no .stderr in ui-tests/fail");

    let mut problems = Vec::new();
    for (case, first) in &cases {
        let Some(first) = first else {
            problems.push(format!(
                "{case}: its .stderr has no line starting with `error`"
            ));
            continue;
        };
        match entries.get(case) {
            None => problems.push(format!(
                "missing: {case} is not listed; add an entry `- `{case}`: ...` with the line\n    {first}"
            )),
            Some(lines) if !lines.iter().any(|line| line == first) => problems.push(format!(
                "stale: the entry of {case} does not show its first error line; it shows\n    {}\n  and the compiler now says\n    {first}",
                lines.join("\n    ")
            )),
            Some(_) => {}
        }
    }
    for case in entries.keys() {
        if !cases.contains_key(case) {
            problems.push(format!(
                "stale: {case} is listed but ui-tests/fail has no {case} (with its .stderr)"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} is out of step with ui-tests/fail ({} problems):\n\n{}\n",
        doc_path.display(),
        problems.len(),
        problems.join("\n\n")
    );
}

#[test]
fn the_parser_finds_entries_and_their_messages() {
    let markdown = "
# Title
- `a.rs`: the first.
  ```rust,ignore
  #[step(retry = 3)]
  error: not this one, it is code
  ```
  ```text
  error: first of a
  ```
text between

- `b.rs`: the second, without a message.
## Heading
```text
error: belongs to no entry
```
";
    let entries = documented(markdown);
    assert_eq!(entries["a.rs"], ["error: first of a"]);
    assert!(entries["b.rs"].is_empty());
    assert_eq!(entries.len(), 2);
}
