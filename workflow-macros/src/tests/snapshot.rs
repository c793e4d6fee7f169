//! The full expansion of a small research agent, compared with
//! `tests/snapshots/research_agent.expanded.rs`. When an intended change alters the expansion,
//! regenerate the file with `UPDATE_SNAPSHOTS=1 cargo test -p workflow-macros` and review the
//! diff like code.

use std::path::PathBuf;

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};

use super::{step, workflow};

const WORKFLOW_ARGS: &str = "max_steps = 50, max_cost_usd = 2.00, concurrency = 4";
const WORKFLOW: &str = r#"
/// Plans questions about a goal, researches each, and writes a report.
pub async fn research_agent(goal: String) -> anyhow::Result<String> {
    #[step]
    let plan = plan_questions(&goal).await?;
    let mut findings = Vec::new();
    for q in &plan {
        #[step(retries = 3, timeout = "60s")]
        let answer = search_and_summarize(q).await?;
        findings.push((q.clone(), answer));
    }
    let draft = #[step(name = "draft")] llm.complete(&goal, &findings).await;
    #[step]
    notify_reviewer(&goal).await?;
    #[step]
    let report = synthesize(&goal, &findings, draft.ok()).await?;
    Ok(report)
}
"#;

const STEP_ARGS: &str =
    "retries = 3, timeout = \"60s\", backoff(initial = \"2s\", max = \"1m\"), rate = \"llm\"";
const STEP_FN: &str = r#"
async fn search_and_summarize(question: &str, depth: u32) -> anyhow::Result<String> {
    Ok(format!("{question} at depth {depth}"))
}
"#;

#[test]
fn research_agent_expansion_matches_the_snapshot() {
    let workflow = workflow(WORKFLOW_ARGS, WORKFLOW);
    workflow.assert_no_errors();
    let step = step(STEP_ARGS, STEP_FN);
    step.assert_no_errors();
    let actual = format!(
        "// The expansion of `#[workflow({WORKFLOW_ARGS})]` and `#[step({STEP_ARGS})]` in\n\
         // workflow-macros/src/tests/snapshot.rs. Regenerate with\n\
         // `UPDATE_SNAPSHOTS=1 cargo test -p workflow-macros`; not compiled.\n\n{}\n{}",
        pretty(workflow.tokens),
        pretty(step.tokens)
    );
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("snapshots")
        .join("research_agent.expanded.rs");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; create it with UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    if expected != actual {
        let first_difference = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "the expansion differs from {} from line {}:\n  expected: {:?}\n  actual:   {:?}\n\
             If the change is intended, regenerate with UPDATE_SNAPSHOTS=1 and review the diff.",
            path.display(),
            first_difference + 1,
            expected.lines().nth(first_difference),
            actual.lines().nth(first_difference),
        );
    }
}

/// Lays tokens out roughly as rustfmt would, enough to review a diff (no dependency on
/// prettyplease or on a rustfmt binary, whose output changes between releases).
fn pretty(tokens: TokenStream) -> String {
    let mut printer = Printer::default();
    printer.stream(tokens, 0);
    let mut out = String::new();
    for line in printer.out.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[derive(Default)]
struct Printer {
    out: String,
    /// Whether the previous token asks for no space before the next one.
    glue: bool,
    previous: Option<TokenTree>,
    /// Whether the previous token ended `->` or `=>`.
    after_arrow: bool,
    /// Whether a closure's parameter list is open: `|error| ...`.
    in_closure_params: bool,
}

const KEYWORDS: &[&str] = &[
    "as", "async", "await", "else", "fn", "for", "if", "impl", "in", "let", "loop", "match",
    "move", "mut", "return", "while", "where", "dyn", "struct", "const", "type", "pub", "use",
];

impl Printer {
    fn newline(&mut self, indent: usize) {
        let trimmed = self.out.trim_end().len();
        self.out.truncate(trimmed);
        self.out.push('\n');
        self.out.push_str(&"    ".repeat(indent));
        self.glue = true;
    }

    fn previous_is_plain_ident(&self) -> bool {
        matches!(&self.previous, Some(TokenTree::Ident(ident))
            if !KEYWORDS.contains(&ident.to_string().as_str()))
    }

    fn previous_punct(&self) -> Option<char> {
        match &self.previous {
            Some(TokenTree::Punct(punct)) => Some(punct.as_char()),
            _ => None,
        }
    }

    fn space_before(&self, token: &TokenTree) -> bool {
        if self.glue || self.out.is_empty() {
            return false;
        }
        let after_group = matches!(&self.previous, Some(TokenTree::Group(_)));
        match token {
            TokenTree::Punct(punct) => match punct.as_char() {
                ',' | ';' | '.' | '?' => false,
                '|' if self.in_closure_params => false,
                // `a::b`, `<T>::Ok`, `x: u8`, but `= ::core`.
                ':' if punct.spacing() == Spacing::Joint => {
                    self.after_arrow
                        || !(self.previous_is_plain_ident() || self.previous_punct() == Some('>'))
                }
                ':' => false,
                '!' | '<' => !self.previous_is_plain_ident(),
                '>' => false,
                _ => true,
            },
            TokenTree::Group(group) => match group.delimiter() {
                Delimiter::Parenthesis | Delimiter::Bracket => {
                    !(self.previous_is_plain_ident()
                        || after_group
                        || matches!(self.previous_punct(), Some('!' | '>' | '#' | '&')))
                }
                _ => true,
            },
            _ => true,
        }
    }

    fn stream(&mut self, tokens: TokenStream, indent: usize) {
        let mut tokens = tokens.into_iter().peekable();
        while let Some(token) = tokens.next() {
            if self.space_before(&token) {
                self.out.push(' ');
            }
            let before = self.previous.take();
            self.glue = false;
            let ends_item = |next: Option<&TokenTree>| match next {
                None => false,
                Some(TokenTree::Punct(p)) => !matches!(p.as_char(), ',' | ';' | '.' | ')' | '?'),
                Some(TokenTree::Ident(i)) => i != "else",
                _ => true,
            };
            match &token {
                TokenTree::Group(group) => match group.delimiter() {
                    // `use a::{B, C}`.
                    Delimiter::Brace if matches!(&before, Some(TokenTree::Punct(p)) if p.as_char() == ':') =>
                    {
                        self.out.push('{');
                        self.glue = true;
                        self.stream(group.stream(), indent);
                        self.out.push('}');
                    }
                    Delimiter::Brace => {
                        if group.stream().is_empty() {
                            self.out.push_str("{}");
                        } else {
                            self.out.push('{');
                            self.newline(indent + 1);
                            self.stream(group.stream(), indent + 1);
                            self.newline(indent);
                            self.out.push('}');
                        }
                        if ends_item(tokens.peek()) {
                            self.newline(indent);
                        }
                    }
                    delimiter => {
                        let (open, close) = match delimiter {
                            Delimiter::Parenthesis => ('(', ')'),
                            Delimiter::Bracket => ('[', ']'),
                            _ => (' ', ' '),
                        };
                        self.out.push(open);
                        self.glue = true;
                        self.previous = None;
                        self.stream(group.stream(), indent);
                        self.out.push(close);
                        self.glue = false;
                        // An outer attribute goes on its own line.
                        if delimiter == Delimiter::Bracket
                            && matches!(&before, Some(TokenTree::Punct(p)) if p.as_char() == '#')
                        {
                            self.newline(indent);
                        }
                    }
                },
                TokenTree::Punct(punct) => {
                    self.out.push(punct.as_char());
                    let second_colon = punct.as_char() == ':'
                        && matches!(&before, Some(TokenTree::Punct(p)) if p.as_char() == ':' && p.spacing() == Spacing::Joint);
                    self.glue = punct.spacing() == Spacing::Joint
                        || second_colon
                        || matches!(punct.as_char(), '.' | '#' | '&' | '<')
                        || (punct.as_char() == '!'
                            && matches!(tokens.peek(), Some(TokenTree::Group(_))));
                    if punct.as_char() == ';' {
                        self.newline(indent);
                    }
                    // A lone `|` opens a closure's parameters when it starts an expression.
                    if punct.as_char() == '|' && punct.spacing() == Spacing::Alone {
                        let after_joint_pipe = matches!(&before, Some(TokenTree::Punct(p))
                            if p.as_char() == '|' && p.spacing() == Spacing::Joint);
                        let opens = !self.in_closure_params
                            && !after_joint_pipe
                            && matches!(&before, None | Some(TokenTree::Punct(_)));
                        self.in_closure_params = opens;
                        self.glue = opens;
                    }
                    self.after_arrow = punct.as_char() == '>'
                        && matches!(&before, Some(TokenTree::Punct(p)) if matches!(p.as_char(), '-' | '=') && p.spacing() == Spacing::Joint);
                }
                TokenTree::Ident(ident) => self.out.push_str(&ident.to_string()),
                TokenTree::Literal(literal) => self.out.push_str(&literal.to_string()),
            }
            if !matches!(&token, TokenTree::Punct(_)) {
                self.after_arrow = false;
            }
            self.previous = Some(token);
        }
    }
}
