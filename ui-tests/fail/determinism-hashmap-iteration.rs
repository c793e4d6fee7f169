use std::collections::HashMap;

use workflow_runtime::workflow;

async fn ask(question: &str) -> anyhow::Result<String> {
    Ok(question.to_owned())
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let mut questions = HashMap::new();
    questions.insert("why", format!("why {goal}?"));
    questions.insert("how", format!("how {goal}?"));
    let mut answers = Vec::new();
    for (_, question) in &questions {
        #[step]
        let answer = ask(question).await?;
        answers.push(answer);
    }
    Ok(answers.join("\n"))
}

fn main() {}
