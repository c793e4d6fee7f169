use workflow_runtime::step;

#[step]
struct Fetch {
    url: String,
}

fn main() {}
