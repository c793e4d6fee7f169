//! A support agent from end to end, the example to copy from: it fetches a ticket from the help
//! desk's HTTP API, asks a model to classify it (the model's API answers 429 now and then),
//! looks up the customer's account, orders and the knowledge base at once, drafts a reply, asks
//! a person to approve a refund, and posts the reply exactly once.
//!
//! ```text
//! cargo run --example ticket_triage -- [--db PATH] [--ticket ID] [--new]
//!     [--approve-after-s N | --reject | --no-answer] [--fail-rate F]
//! ```
//!
//! What each part of the library does here:
//!
//! - **Resources.** The help desk client, the model and the directory of customers are the
//!   engine's resources (`Engine::builder().resource(..)`), which the steps read with
//!   `resource::<T>()`: no statics, and a test engine registers fakes (tests/ticket_triage.rs).
//!   Nothing they hold is journaled.
//! - **Retries by class.** A 429 waits its Retry-After and retries; a timeout retries; a 4xx
//!   does not. Each step returns a `StepFailure`, whose class decides.
//! - **Rate limit.** Every model call draws from the engine's `model` bucket, and a 429 closes
//!   the bucket for its Retry-After, for every run.
//! - **Fan-out.** The three lookups run at once (`tokio::try_join!` over three steps); the
//!   journal records the order their outcomes reached the body, and a resumed run gets them back
//!   in that order.
//! - **Human approval.** A refund over $50 waits for the event `approval`, durably, up to a
//!   day; the run leaves memory while it waits and a crash does not restart the day.
//! - **At most once.** Posting the reply is `at_most_once`: after a crash during the call, the
//!   run stops with an `outcome_unknown` error rather than reply twice.
//! - **Budget.** `max_cost_usd` caps what the model calls of one run may cost, across crashes.
//!
//! It runs offline: the help desk is a small HTTP server on a loopback port in this process, and
//! the model is the simulation of `src/sim_llm.rs`, which fails like a real API at
//! `--fail-rate`. Kill it while it waits for the approval and run it again: it waits for what
//! remains, and the steps it finished replay from the journal.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use workflow_examples::sim_llm::{INPUT_USD_PER_MTOK, MODEL, OUTPUT_USD_PER_MTOK, SimLlm};
use workflow_runtime::{
    Engine, EngineBuilder, Event, HttpError, RateLimit, StepContext, StepFailure, durable,
    resource, step, workflow,
};

// ---- The workflow ------------------------------------------------------------------------

/// A support ticket, as the help desk returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    /// The help desk's id.
    pub id: u64,
    /// Who wrote it.
    pub customer: String,
    /// Its subject line.
    pub subject: String,
    /// What the customer wrote.
    pub body: String,
}

/// What the model made of a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Triage {
    /// `billing`, `shipping` or `account`.
    pub category: String,
    /// Whether the customer asks for money back.
    pub wants_refund: bool,
}

/// The customer's account, from the directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// The customer's name.
    pub name: String,
    /// `free` or `pro`.
    pub plan: String,
}

/// An order of the customer's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// The order's id.
    pub id: String,
    /// What it cost, in US dollars.
    pub amount_usd: u64,
}

/// The reply the agent drafted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    /// The reply's text.
    pub text: String,
    /// The refund it offers, in US dollars (0: none).
    pub refund_usd: u64,
}

/// A person's answer to the approval request: the payload of the event `approval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// Whether the refund may be offered.
    pub approved: bool,
    /// Who answered.
    pub by: String,
}

/// How the agent left the ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Resolution {
    /// A reply was posted: the help desk's id of it.
    Replied {
        /// The help desk's id of the reply.
        reply_id: String,
        /// The refund offered, in US dollars.
        refund_usd: u64,
    },
    /// Left for a person, for this reason.
    Escalated {
        /// Why.
        reason: String,
    },
}

/// Refunds above this wait for a person's approval.
pub const APPROVAL_ABOVE_USD: u64 = 50;

/// The agent. Its budget caps what the model calls of one run may cost, crashes included.
#[workflow(max_cost_usd = 0.05, max_steps = 20)]
pub async fn triage_ticket(ticket_id: u64) -> anyhow::Result<Resolution> {
    let ticket = fetch_ticket(ticket_id).await?;
    let triage = classify(ticket.clone()).await?;
    // Three lookups at once: each a step, journaled in the order they finish.
    let (account, orders, articles) = tokio::try_join!(
        lookup_account(ticket.customer.clone()),
        lookup_orders(ticket.customer.clone()),
        search_articles(triage.category.clone()),
    )?;
    let draft = draft_reply(ticket.clone(), triage, account, orders, articles).await?;
    if draft.refund_usd > APPROVAL_ABOVE_USD {
        // Durable: the run leaves memory while it waits, and a restart waits only what remains.
        let day = Duration::from_secs(24 * 3_600);
        let answer: Option<Approval> = durable::wait_for_event_timeout("approval", day).await?;
        match answer {
            Some(Approval { approved: true, .. }) => {}
            Some(Approval { by, .. }) => {
                let reason = format!("{by} declined a refund of ${}", draft.refund_usd);
                return Ok(Resolution::Escalated { reason });
            }
            None => {
                let reason = format!("no approval within a day for ${}", draft.refund_usd);
                return Ok(Resolution::Escalated { reason });
            }
        }
    }
    let reply_id = post_reply(ticket.id, draft.text).await?;
    Ok(Resolution::Replied {
        reply_id,
        refund_usd: draft.refund_usd,
    })
}

// ---- The steps: each reads the resource it needs --------------------------------------------

/// Fetches the ticket from the help desk over HTTP.
#[step(retries = 3, timeout = "10s")]
pub async fn fetch_ticket(id: u64) -> Result<Ticket, StepFailure> {
    let desk = resource::<HelpDesk>()?;
    desk.fetch_ticket(id).await
}

/// Asks the model what the ticket is about. A 429 is retried after its Retry-After.
#[step(rate = "model", timeout = "30s")]
pub async fn classify(ticket: Ticket) -> Result<Triage, StepFailure> {
    let model = resource::<Model>()?;
    let prompt = format!(
        "Classify this ticket as billing, shipping or account: {}",
        ticket.body
    );
    model.complete(&prompt, 3).await?;
    // The simulated model's words mean nothing: the category comes from the ticket's words.
    let text = format!("{} {}", ticket.subject, ticket.body).to_lowercase();
    let category = ["billing", "shipping", "account"]
        .into_iter()
        .find(|c| text.contains(c))
        .unwrap_or("account");
    Ok(Triage {
        category: category.to_owned(),
        wants_refund: text.contains("refund"),
    })
}

/// The customer's account.
#[step(timeout = "5s")]
pub async fn lookup_account(customer: String) -> Result<Account, StepFailure> {
    let directory = resource::<Directory>()?;
    directory
        .accounts
        .get(&customer)
        .cloned()
        .ok_or_else(|| StepFailure::terminal(format!("no account for {customer}")))
}

/// The customer's orders.
#[step(timeout = "5s")]
pub async fn lookup_orders(customer: String) -> Result<Vec<Order>, StepFailure> {
    let directory = resource::<Directory>()?;
    Ok(directory.orders.get(&customer).cloned().unwrap_or_default())
}

/// Titles of the knowledge base's articles in the ticket's category.
#[step(timeout = "5s")]
pub async fn search_articles(category: String) -> Result<Vec<String>, StepFailure> {
    let directory = resource::<Directory>()?;
    Ok(directory
        .articles
        .iter()
        .filter(|(c, _)| *c == category)
        .map(|(_, title)| title.clone())
        .collect())
}

/// Drafts the reply with the model, offering a refund of the last order when one is asked for.
#[step(rate = "model", timeout = "30s")]
pub async fn draft_reply(
    ticket: Ticket,
    triage: Triage,
    account: Account,
    orders: Vec<Order>,
    articles: Vec<String>,
) -> Result<Draft, StepFailure> {
    let model = resource::<Model>()?;
    let prompt = format!(
        "Draft a reply to {} ({} plan) about: {}. Useful articles: {}",
        account.name,
        account.plan,
        ticket.subject,
        articles.join(", ")
    );
    let words = model.complete(&prompt, 12).await?;
    let refund_usd = match (triage.wants_refund, orders.last()) {
        (true, Some(order)) => order.amount_usd,
        _ => 0,
    };
    let mut text = format!("Hello {}, {words}", account.name);
    if refund_usd > 0 {
        text.push_str(&format!(" We refund ${refund_usd}."));
    }
    Ok(Draft { text, refund_usd })
}

/// Posts the reply. At most once: the help desk would show the customer a second copy.
#[step(at_most_once, retries = 0, timeout = "10s")]
pub async fn post_reply(ticket_id: u64, text: String) -> Result<String, StepFailure> {
    let desk = resource::<HelpDesk>()?;
    // The key is the same in every attempt and every process: the help desk drops a repeat.
    let key = StepContext::current()
        .map(|c| c.idempotency_key().to_owned())
        .unwrap_or_default();
    desk.post_reply(ticket_id, &text, &key).await
}

// ---- The resources ------------------------------------------------------------------------

/// The help desk's HTTP API.
#[derive(Debug, Clone)]
pub struct HelpDesk {
    address: SocketAddr,
}

impl HelpDesk {
    /// A client of the help desk at `address`.
    pub fn new(address: SocketAddr) -> HelpDesk {
        HelpDesk { address }
    }

    /// `GET /tickets/{id}`.
    pub async fn fetch_ticket(&self, id: u64) -> Result<Ticket, StepFailure> {
        let body = self.request(&format!("GET /tickets/{id}"), "", "").await?;
        serde_json::from_str(&body).map_err(StepFailure::classified)
    }

    /// `POST /tickets/{id}/replies` with an `Idempotency-Key`; returns the reply's id.
    pub async fn post_reply(&self, id: u64, text: &str, key: &str) -> Result<String, StepFailure> {
        self.request(&format!("POST /tickets/{id}/replies"), key, text)
            .await
    }

    /// One HTTP/1.1 exchange; a status other than 200 becomes an [`HttpError`], which the
    /// retry policy classifies (429 waits its Retry-After, 5xx retries, 4xx does not).
    async fn request(&self, line: &str, key: &str, body: &str) -> Result<String, StepFailure> {
        let io = |e: std::io::Error| StepFailure::classified(e);
        let mut stream = TcpStream::connect(self.address).await.map_err(io)?;
        let request = format!(
            "{line} HTTP/1.1\r\nhost: help-desk\r\nidempotency-key: {key}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.map_err(io)?;
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(502);
        if status != 200 {
            let error = HttpError::new(status, None, format!("help desk: {body}"));
            return Err(StepFailure::classified(error));
        }
        Ok(body.to_owned())
    }
}

/// The model: here the simulation, which reports its tokens to the step (the engine's prices
/// turn them into dollars, which the budget counts).
#[derive(Debug, Clone)]
pub struct Model {
    llm: SimLlm,
}

impl Model {
    /// The simulated model, taking about `latency` per call and failing at `fail_rate`.
    pub fn simulated(latency: Duration, fail_rate: f64) -> Model {
        Model {
            llm: SimLlm { latency, fail_rate },
        }
    }

    /// The model's answer to `prompt`, in about `words` words.
    pub async fn complete(&self, prompt: &str, words: usize) -> Result<String, StepFailure> {
        let completion = self.llm.complete(prompt, words).await;
        completion.map(|c| c.text).map_err(StepFailure::classified)
    }
}

/// Customers, their orders, and the knowledge base.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    /// Accounts by customer.
    pub accounts: HashMap<String, Account>,
    /// Orders by customer, oldest first.
    pub orders: HashMap<String, Vec<Order>>,
    /// (category, title) of each article.
    pub articles: Vec<(String, String)>,
}

impl Directory {
    /// The example's customers and articles.
    pub fn sample() -> Directory {
        let account = |name: &str, plan: &str| Account {
            name: name.into(),
            plan: plan.into(),
        };
        let order = |id: &str, amount_usd| Order {
            id: id.into(),
            amount_usd,
        };
        Directory {
            accounts: HashMap::from([
                ("ada".into(), account("Ada", "pro")),
                ("lin".into(), account("Lin", "free")),
            ]),
            orders: HashMap::from([
                ("ada".into(), vec![order("A-1", 20), order("A-2", 120)]),
                ("lin".into(), vec![order("L-1", 15)]),
            ]),
            articles: vec![
                ("billing".into(), "Refunds and credits".into()),
                ("billing".into(), "Reading your invoice".into()),
                ("shipping".into(), "Where is my parcel?".into()),
            ],
        }
    }
}

/// Every resource and limit of the agent's engine, on `builder`: the production engine and the
/// test engine share this, with other resources.
pub fn configure(builder: EngineBuilder, desk: HelpDesk, model: Model) -> EngineBuilder {
    builder
        .resource(desk)
        .resource(model)
        .resource(Directory::sample())
        .price(MODEL, INPUT_USD_PER_MTOK, OUTPUT_USD_PER_MTOK)
        .rate_limit("model", RateLimit::requests_per_minute(60))
}

// ---- The help desk, simulated on a loopback port ------------------------------------------------

/// The tickets the simulated help desk holds, and the replies it received.
#[derive(Debug, Default)]
pub struct Desk {
    /// Tickets by id.
    pub tickets: HashMap<u64, Ticket>,
    /// Replies received: (ticket id, idempotency key, text). A repeated key is dropped.
    pub replies: Vec<(u64, String, String)>,
}

impl Desk {
    /// The example's tickets: 7 asks for a refund of $120, 8 for one of $15, 9 about shipping.
    pub fn sample() -> Desk {
        let ticket = |id, customer: &str, subject: &str, body: &str| {
            let ticket = Ticket {
                id,
                customer: customer.into(),
                subject: subject.into(),
                body: body.into(),
            };
            (id, ticket)
        };
        Desk {
            tickets: HashMap::from([
                ticket(
                    7,
                    "ada",
                    "Billing: charged twice",
                    "I want a refund for my last order.",
                ),
                ticket(8, "lin", "Billing question", "Please refund order L-1."),
                ticket(
                    9,
                    "lin",
                    "Shipping delay",
                    "My parcel is late; shipping says nothing.",
                ),
            ]),
            replies: Vec::new(),
        }
    }
}

/// Serves `desk` on a loopback port until the returned task is dropped or aborted.
pub async fn serve_help_desk(
    desk: Arc<Mutex<Desk>>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let address = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let desk = Arc::clone(&desk);
            tokio::spawn(async move {
                // A client that hangs up early is its own problem: nothing to report here.
                let _ = answer(socket, &desk).await;
            });
        }
    });
    Ok((address, task))
}

/// Reads one request (bounded to 64 KiB) and answers it.
async fn answer(mut socket: TcpStream, desk: &Mutex<Desk>) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buffer = [0_u8; 4096];
    let (head, body) = loop {
        let read = socket.read(&mut buffer).await?;
        request.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&request).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = header(head, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if body.len() >= length {
                break (head.to_owned(), body.to_owned());
            }
        }
        if read == 0 || request.len() > 64 * 1024 {
            return Ok(());
        }
    };
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, reply) = route(
        &mut desk.lock().unwrap_or_else(|p| p.into_inner()),
        method,
        path,
        &head,
        body,
    );
    let response = format!(
        "HTTP/1.1 {status} {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        if status == 200 { "OK" } else { "Not Found" },
        reply.len()
    );
    socket.write_all(response.as_bytes()).await
}

/// The help desk's answer to a request: its status and body.
fn route(desk: &mut Desk, method: &str, path: &str, head: &str, body: String) -> (u16, String) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let id = parts.get(1).and_then(|id| id.parse::<u64>().ok());
    match (method, parts.as_slice(), id) {
        ("GET", ["tickets", _], Some(id)) => match desk.tickets.get(&id) {
            Some(ticket) => (200, serde_json::to_string(ticket).unwrap_or_default()),
            None => (404, format!("no ticket {id}")),
        },
        ("POST", ["tickets", _, "replies"], Some(id)) => {
            let key = header(head, "idempotency-key").unwrap_or_default();
            let known = desk
                .replies
                .iter()
                .position(|(_, k, _)| !key.is_empty() && *k == key);
            let index = match known {
                Some(index) => index,
                None => {
                    desk.replies.push((id, key, body));
                    desk.replies.len() - 1
                }
            };
            (200, format!("reply-{id}-{}", index + 1))
        }
        _ => (404, format!("no route {method} {path}")),
    }
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

// ---- The command line ---------------------------------------------------------------------

struct Options {
    db: String,
    ticket: u64,
    new: bool,
    answer: Answer,
    fail_rate: f64,
}

enum Answer {
    ApproveAfter(Duration),
    Reject,
    None,
}

const USAGE: &str = "usage: ticket_triage [--db PATH] [--ticket ID] [--new] [--approve-after-s N | --reject | --no-answer] [--fail-rate F]";

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        db: "ticket_triage.redb".into(),
        ticket: 7,
        new: false,
        answer: Answer::ApproveAfter(Duration::from_secs(2)),
        fail_rate: 0.2,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--db" => options.db = value("--db")?,
            "--new" => options.new = true,
            "--reject" => options.answer = Answer::Reject,
            "--no-answer" => options.answer = Answer::None,
            "--ticket" => {
                let text = value("--ticket")?;
                options.ticket = text
                    .parse()
                    .map_err(|_| format!("--ticket wants a ticket id (7, 8 or 9), not {text:?}"))?;
            }
            "--approve-after-s" => {
                let text = value("--approve-after-s")?;
                let seconds: u64 = text.parse().map_err(|_| {
                    format!("--approve-after-s wants a whole number of seconds, not {text:?}")
                })?;
                options.answer = Answer::ApproveAfter(Duration::from_secs(seconds));
            }
            "--fail-rate" => {
                let text = value("--fail-rate")?;
                options.fail_rate = text
                    .parse()
                    .ok()
                    .filter(|rate: &f64| (0.0..=1.0).contains(rate))
                    .ok_or_else(|| {
                        format!("--fail-rate wants a number from 0 to 1, not {text:?}")
                    })?;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unexpected argument {other:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> Result<ExitCode, String> {
    let desk = Arc::new(Mutex::new(Desk::sample()));
    let (address, _server) = serve_help_desk(Arc::clone(&desk))
        .await
        .map_err(|e| format!("cannot serve the help desk on a loopback port: {e}"))?;
    let model = Model::simulated(Duration::from_millis(200), options.fail_rate);
    let engine = configure(Engine::builder(), HelpDesk::new(address), model)
        .on_event(print_event)
        .open(&options.db)
        .await
        .map_err(|e| e.to_string())?;
    let mut run_id = format!("ticket-{}", options.ticket);
    if options.new {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        run_id = format!("{run_id}-{now}");
    }
    let run = engine
        .start::<triage_ticket>(run_id.clone(), (options.ticket,))
        .await
        .map_err(|e| e.to_string())?;
    // The person: answers some time after the run starts (an event sent before the run waits
    // is kept until it does).
    let person = engine.clone();
    let answering = run_id.clone();
    tokio::spawn(async move {
        let (after, approved) = match options.answer {
            Answer::ApproveAfter(after) => (after, true),
            Answer::Reject => (Duration::from_secs(1), false),
            Answer::None => return,
        };
        tokio::time::sleep(after).await;
        let approval = Approval {
            approved,
            by: "sam@support".into(),
        };
        if let Err(e) = person.send_event(&answering, "approval", approval).await {
            eprintln!("could not send the approval: {e}");
        }
    });
    let outcome = run.result().await;
    let replies = desk.lock().unwrap_or_else(|p| p.into_inner()).replies.len();
    match outcome {
        Ok(resolution) => {
            println!("run {run_id}: {resolution:?}; the help desk holds {replies} reply(ies)");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("run {run_id} did not finish: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn print_event(event: &Event) {
    match event {
        Event::StepRetrying {
            name,
            attempt,
            error,
            delay,
            ..
        } => println!(
            "  {name}: attempt {attempt} {}; retrying in {delay:.1?}",
            error.message
        ),
        Event::StepFinished {
            name,
            attempts,
            error,
            ..
        } => match error {
            None => println!("  {name}: done after {attempts} attempt(s)"),
            Some(error) => println!("  {name}: FAILED ({})", error.message),
        },
        Event::RunWaiting { waiting_for, .. } => {
            println!("  waiting for {waiting_for} (the run left memory; kill and rerun at will)")
        }
        _ => {}
    }
}
