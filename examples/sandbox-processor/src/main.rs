//! `sandbox-processor [--addr 127.0.0.1:4242] [--api-key KEY] [--allowed-origin ORIGINS]
//! [--timeout-secs SECS] [--quiet]`: runs the sandbox card processor. The first line on
//! stdout is `listening on http://ADDR`.

use std::io::Write;
use std::process::ExitCode;

use sandbox_processor::{Config, parse_seconds, spawn_with};

const USAGE: &str = "\
usage: sandbox-processor [options]

  --addr ADDR              address to listen on (default 127.0.0.1:4242; port 0 picks one)
  --api-key KEY            require `Authorization: Bearer KEY` on every request except
                           POST /v1/tokens (env SANDBOX_API_KEY)
  --allowed-origin LIST    origins allowed to tokenize from a browser, comma-separated,
                           or * (default *; env SANDBOX_ALLOWED_ORIGIN)
  --timeout-secs SECS      how long the timeout test card hangs before its 504
                           (default 30; env SANDBOX_TIMEOUT_SECS)
  --quiet                  no log line per operation on stderr
  -h, --help               this text

The first line on stdout is `listening on http://ADDR`.";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sandbox-processor: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut config = Config::from_env()?;
    config.log = true;
    let mut addr = std::env::var("SANDBOX_ADDR").unwrap_or_else(|_| "127.0.0.1:4242".to_owned());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match name.as_str() {
            "--addr" => addr = value()?,
            "--api-key" => config.set_api_key(&value()?),
            "--allowed-origin" => config.set_allowed_origins(&value()?)?,
            "--timeout-secs" => {
                config.timeout =
                    parse_seconds(&value()?).map_err(|e| format!("--timeout-secs: {e}"))?
            }
            "--quiet" => config.log = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}`\n\n{USAGE}")),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let (bound, handle) = spawn_with(addr.as_str(), config)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "listening on http://{bound}");
        let _ = stdout.flush();
        handle
            .wait()
            .await
            .map_err(|e| format!("server failed: {e}"))
    })
}
