use workflow_runtime::step;

#[step(retries = 2)]
async fn append(log: &mut Vec<String>, line: String) -> anyhow::Result<usize> {
    log.push(line);
    Ok(log.len())
}

fn main() {}
