use std::time::Duration;

use ferry_companion::config::{Command, ConfigError};
use ferry_companion::{Config, janitor};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = match Config::load() {
        Ok(config) => config,
        Err(ConfigError::Arguments(err)) => err.exit(),
        Err(ConfigError::File(message)) => {
            eprintln!("ferry-companion: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Some(Command::Config) = config.command {
        return match toml::to_string(&config) {
            Ok(text) => {
                print!("{text}");
                std::process::ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("ferry-companion: cannot print the settings: {err}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    ferry_companion::server::raise_open_file_limit();
    let companion = match ferry_companion::build(&config).await {
        Ok(companion) => companion,
        Err(message) => {
            eprintln!("ferry-companion: {message}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let age = Duration::from_secs(config.janitor_age);
    if let Some(Command::Janitor) = config.command {
        return match janitor::sweep(&companion.state.store, &companion.state.key_prefix, age).await
        {
            Ok(sweep) => {
                println!(
                    "janitor: {} uploads under {:?}, {} aborted",
                    sweep.seen, companion.state.key_prefix, sweep.aborted
                );
                std::process::ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("ferry-companion janitor: {err}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if config.janitor_period > 0 {
        let state = companion.state.clone();
        let prefix = companion.state.key_prefix.clone();
        let period = Duration::from_secs(config.janitor_period);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(period);
            loop {
                every.tick().await;
                if let Err(err) = janitor::sweep(&state.store, &prefix, age).await {
                    tracing::warn!(%err, "janitor sweep failed");
                }
            }
        });
    }
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("ferry-companion: cannot listen on {}: {err}", config.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    tracing::info!(%addr, store = %companion.store.endpoint, bucket = %companion.store.bucket, "companion listening");
    // Tools that start the companion read this line to learn the port.
    println!("ferry-companion listening on http://{addr}");
    ferry_companion::server::serve(
        listener,
        companion.router,
        ferry_companion::connection_limits(&config),
        shutdown(),
    )
    .await;
    std::process::ExitCode::SUCCESS
}

/// Ctrl-C or SIGTERM: stop accepting, let running requests finish.
async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
