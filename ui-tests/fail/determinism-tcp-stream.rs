use tokio::net::TcpStream;

use workflow_runtime::workflow;

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let stream = TcpStream::connect("127.0.0.1:7000").await?;
    Ok(format!("{goal} via {:?}", stream.peer_addr()?))
}

fn main() {}
