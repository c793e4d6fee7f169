use workflow_runtime::step;

struct Client;

impl Client {
    #[step]
    async fn fetch(&self, url: String) -> anyhow::Result<String> {
        Ok(url)
    }
}

fn main() {}
