//! The `tickcast` binary: parse flags, load symbols, bind, serve until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tickcast::config::{Command, LogFormat, TokenArgs};
use tickcast::market::{symbols, Symbol};
use tickcast::{shutdown, Config};

/// Exit code of a usage error (a bad flag or flag value), as clap uses; other failures exit 1.
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let mut config = match Config::try_parse() {
        Ok(config) => config,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            eprintln!("tickcast: {first}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    if let Some(Command::Token(args)) = &config.command {
        return print_token(args);
    }
    if let Err(e) = config.validate() {
        eprintln!("tickcast: error: {e}");
        return ExitCode::from(USAGE_ERROR);
    }
    // Certificate files are flag values too: a bad one is a usage error.
    if let Err(e) = config.load_tls() {
        eprintln!("tickcast: error: {e}");
        return ExitCode::from(USAGE_ERROR);
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => {
            use std::io::IsTerminal;
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            logs.with_ansi(colour).init();
        }
        LogFormat::Json => logs.json().init(),
    }
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tickcast: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `tickcast token`: prints an HS256 token for the given symbols and lifetime.
fn print_token(args: &TokenArgs) -> ExitCode {
    let symbols: Vec<String> = args
        .symbols
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect();
    if let Some(bad) = symbols
        .iter()
        .find(|s| s.as_str() != tickcast::auth::ALL_SYMBOLS && s.parse::<Symbol>().is_err())
    {
        eprintln!("tickcast: error: --symbols: {bad:?} is not a symbol (or * for all)");
        return ExitCode::from(USAGE_ERROR);
    }
    let now = tickcast::auth::unix_now();
    let exp = now + args.ttl.as_secs();
    match tickcast::auth::mint(args.jwt_secret.as_bytes(), &symbols, now, exp) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tickcast: error: {e}");
            ExitCode::from(USAGE_ERROR)
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let specs = symbols::load_or_built_in(config.symbols.as_deref())?;
    raise_open_file_limit(config.max_clients);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let listener = tickcast::listen(config.addr)
            .with_context(|| format!("cannot listen on {}", config.addr))?;
        tickcast::run(listener, config, specs, shutdown::signal()).await?;
        Ok(())
    })
}

/// Every client is a socket: raise the soft open-file limit to the hard limit (commonly 1024
/// soft), and warn if `--max-clients` still does not fit.
fn raise_open_file_limit(max_clients: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if (limit as usize) < max_clients + 64 => tracing::warn!(
            limit,
            max_clients,
            "the open-file limit is below --max-clients; connections past it will be refused"
        ),
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
}
