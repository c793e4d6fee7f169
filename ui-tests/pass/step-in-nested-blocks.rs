//! `#[step]` at any depth: loops, `if`/`match` arms, closures, async blocks, method calls.

use workflow_runtime::{StepError, workflow};

async fn search(q: &str) -> anyhow::Result<String> {
    Ok(format!("<{q}>"))
}

struct Llm;

impl Llm {
    async fn complete(&self, prompt: &str) -> anyhow::Result<String> {
        Ok(prompt.to_uppercase())
    }
}

#[workflow]
async fn agent(questions: Vec<String>) -> anyhow::Result<Vec<String>> {
    let llm = Llm;
    let mut answers = Vec::new();
    for q in &questions {
        if q.is_empty() {
            continue;
        }
        match q.len() {
            1 => {
                #[step]
                let short = search(q).await?;
                answers.push(short);
            }
            _ => {
                #[step(name = "long")]
                let long = llm.complete(q).await?;
                answers.push(long);
            }
        }
    }
    let summarize = |text: String| async move {
        #[step]
        let s = search(&text).await?;
        Ok::<_, StepError>(s)
    };
    answers.push(summarize("all".to_owned()).await?);
    let extra = async {
        let mut n = 0;
        while n < 2 {
            #[step]
            search("loop").await?;
            n += 1;
        }
        Ok::<_, StepError>(n)
    }
    .await?;
    answers.push(extra.to_string());
    Ok(answers)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let answers = agent(vec!["a".into(), String::new(), "bc".into()])
        .await
        .unwrap();
    assert_eq!(answers, ["<a>", "BC", "<all>", "2"]);
}
