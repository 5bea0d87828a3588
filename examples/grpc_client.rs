//! A gRPC client of IsoBox with tonic, using the client generated from `proto/isobox.proto` that
//! `isobox_server::grpc::pb` exports (and the `tonic` that crate re-exports, so the versions
//! match).
//!
//! ```sh
//! ISOBOX_GRPC_URL=http://127.0.0.1:9000 ISOBOX_API_KEY=... cargo run --example grpc_client
//! ```
//!
//! Environment: `ISOBOX_GRPC_URL` (default `http://127.0.0.1:9000`), `ISOBOX_API_KEY`
//! (optional, sent in the metadata under `ISOBOX_API_KEY_HEADER` lower-cased, default
//! `x-api-key`, as the server's `API_KEY_HEADER`).
//!
//! It calls `Execute` (a hello world with stdin), `ExecuteStream` (output chunks as produced,
//! then the result) and `ListLanguages`, and exits 1 on any failure, printing the gRPC status
//! code, its message and the `isobox-error` kind (and `retry-after` when the server sets it).

use isobox_server::grpc::pb;
use isobox_server::grpc::pb::executor_client::ExecutorClient;
use isobox_server::grpc::tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use isobox_server::grpc::tonic::service::interceptor::{InterceptedService, Interceptor};
use isobox_server::grpc::tonic::transport::Channel;
use isobox_server::grpc::tonic::{Request, Status};

const HELLO: &str =
    "import sys\nname = input()\nprint(f\"Hello, {name}!\")\nprint(\"bye\", file=sys.stderr)\n";

/// Adds the API key (if any) to the metadata of every call.
#[derive(Clone)]
struct ApiKey(Option<(AsciiMetadataKey, AsciiMetadataValue)>);

impl Interceptor for ApiKey {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some((name, value)) = &self.0 {
            req.metadata_mut().insert(name.clone(), value.clone());
        }
        Ok(req)
    }
}

type Client = ExecutorClient<InterceptedService<Channel, ApiKey>>;

async fn connect(url: &str) -> anyhow::Result<Client> {
    let channel = Channel::from_shared(url.to_string())?
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {url}: {e}"))?;
    let key = match std::env::var("ISOBOX_API_KEY") {
        Ok(k) if !k.is_empty() => {
            let header =
                std::env::var("ISOBOX_API_KEY_HEADER").unwrap_or_else(|_| "x-api-key".into());
            // gRPC metadata names are lower case.
            let name: AsciiMetadataKey = header.to_ascii_lowercase().parse()?;
            let value: AsciiMetadataValue = k.parse()?;
            Some((name, value))
        }
        _ => None,
    };
    Ok(ExecutorClient::with_interceptor(channel, ApiKey(key)))
}

/// A gRPC error as one line: code, message, and the REST error kind the server attaches.
fn describe(s: &Status) -> String {
    let md = s.metadata();
    let get = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut out = format!("{:?}: {}", s.code(), s.message());
    if let Some(kind) = get("isobox-error") {
        out.push_str(&format!(" [{kind}]"));
    }
    if let Some(secs) = get("retry-after") {
        out.push_str(&format!(" (retry after {secs} s)"));
    }
    out
}

fn hello(stdin: &str) -> pb::ExecuteRequest {
    pb::ExecuteRequest {
        language: "python".into(),
        code: Some(HELLO.into()),
        stdin: Some(stdin.into()),
        ..Default::default()
    }
}

fn show(r: &pb::ExecuteResult) {
    let code = r.exit_code.map_or("none".to_string(), |c| c.to_string());
    println!("status: {} (exit code {code})", r.status);
    for (name, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        for line in text.lines() {
            println!("{name}: {line}");
        }
    }
}

async fn run() -> anyhow::Result<bool> {
    let url = std::env::var("ISOBOX_GRPC_URL").unwrap_or_else(|_| "http://127.0.0.1:9000".into());
    println!("IsoBox gRPC at {url}");
    let mut client = connect(&url).await?;
    let rpc = |s: Status| anyhow::anyhow!("{}", describe(&s));

    println!("== Execute");
    let result = client
        .execute(hello("world"))
        .await
        .map_err(rpc)?
        .into_inner();
    show(&result);
    let mut ok = result.status == "ok";

    println!("== ExecuteStream");
    let mut stream = client
        .execute_stream(hello("stream"))
        .await
        .map_err(rpc)?
        .into_inner();
    let mut got_result = false;
    while let Some(msg) = stream.message().await.map_err(rpc)? {
        match msg.kind {
            Some(pb::stream_message::Kind::Stdout(b)) => {
                println!("[stdout] {}", String::from_utf8_lossy(&b).trim_end())
            }
            Some(pb::stream_message::Kind::Stderr(b)) => {
                println!("[stderr] {}", String::from_utf8_lossy(&b).trim_end())
            }
            Some(pb::stream_message::Kind::Compile(c)) => {
                println!("[compile] status: {}", c.status)
            }
            Some(pb::stream_message::Kind::Result(r)) => {
                println!("[result] status: {}", r.status);
                ok &= r.status == "ok";
                got_result = true;
            }
            None => {}
        }
    }
    if !got_result {
        anyhow::bail!("the stream ended without a result");
    }

    println!("== ListLanguages");
    let langs = client
        .list_languages(pb::ListLanguagesRequest {})
        .await
        .map_err(rpc)?
        .into_inner();
    let names: Vec<String> = langs
        .languages
        .iter()
        .map(|l| format!("{} {}", l.name, l.version))
        .collect();
    println!("languages: {}", names.join(", "));
    Ok(ok)
}

#[tokio::main]
async fn main() {
    match run().await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
