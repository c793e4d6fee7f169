use workflow_runtime::step;

struct Connection;

#[step(retries = 3)]
async fn query(connection: Connection, sql: &str) -> anyhow::Result<u64> {
    let _ = (connection, sql);
    Ok(1)
}

fn main() {}
