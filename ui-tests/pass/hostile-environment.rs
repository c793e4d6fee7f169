//! Generated code uses absolute paths: shadowing `Result`, `Ok`, `Box`, `Clone` and the crate
//! name changes nothing; `crate = "..."` reaches a renamed runtime (`backoff` names its
//! `Backoff` through it); a `macro_rules!` can generate workflows.

extern crate workflow_runtime as renamed_runtime;

#[allow(dead_code)]
mod workflow_runtime {}
#[allow(dead_code)]
mod core {}
#[allow(dead_code)]
mod std {}

#[allow(dead_code)]
type Result<T> = ::core::result::Result<T, ()>;
#[allow(dead_code)]
struct Box;
#[allow(dead_code)]
trait Clone {}
#[allow(dead_code, non_snake_case)]
fn Ok() {}

mod steps {
    #[renamed_runtime::step(crate = "::renamed_runtime", retries = 1, timeout = "1s")]
    pub async fn shout(text: String) -> ::core::result::Result<String, ::std::io::Error> {
        ::core::result::Result::Ok(text.to_uppercase())
    }
}

async fn echo(text: &str) -> ::core::result::Result<String, ::std::io::Error> {
    ::core::result::Result::Ok(text.to_owned())
}

#[renamed_runtime::workflow(
    crate = "::renamed_runtime",
    max_steps = 5,
    concurrency = 2,
    version = 3
)]
async fn agent(goal: String) -> ::core::result::Result<String, renamed_runtime::StepError> {
    #[step(timeout = "1s", backoff(initial = "1ms"))]
    let echoed = echo(&goal).await?;
    // A patch through the renamed crate is recognised, and checked, all the same.
    if !renamed_runtime::durable::patched("loud") {
        return ::core::result::Result::Ok(echoed);
    }
    let loud = steps::shout(echoed).await?;
    ::core::result::Result::Ok(loud)
}

async fn double(x: u32) -> ::core::result::Result<u32, ::std::io::Error> {
    ::core::result::Result::Ok(x * 2)
}

/// The default path, `::workflow_runtime`, next to a module of that name.
mod shadowed {
    #[allow(dead_code)]
    mod workflow_runtime {}

    #[::workflow_runtime::workflow]
    pub async fn doubled(x: u32) -> ::core::result::Result<u32, ::workflow_runtime::StepError> {
        #[step]
        let y = super::double(x).await?;
        ::core::result::Result::Ok(y)
    }
}

macro_rules! define_workflow {
    ($name:ident, $step:ident, $patch:expr) => {
        #[renamed_runtime::workflow(crate = "::renamed_runtime")]
        async fn $name(text: String) -> ::core::result::Result<String, renamed_runtime::StepError> {
            // A literal id passed as an `expr` fragment, in an invisible group, is a literal.
            renamed_runtime::durable::deprecated_patch($patch);
            #[step]
            let out = $step(&text).await?;
            ::core::result::Result::Ok(out)
        }
    };
}

define_workflow!(generated, echo, "old-echo");

#[::tokio::main(flavor = "current_thread")]
async fn main() {
    ::core::assert_eq!(agent("hi".into()).await.unwrap(), "HI");
    ::core::assert_eq!(generated("x".into()).await.unwrap(), "x");
    ::core::assert_eq!(<generated as renamed_runtime::Workflow>::NAME, "generated");
    ::core::assert_eq!(<agent as renamed_runtime::Workflow>::VERSION, 3);
    ::core::assert_eq!(shadowed::doubled(21).await.unwrap(), 42);
}
