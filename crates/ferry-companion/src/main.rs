use clap::Parser;
use ferry_companion::Config;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = Config::parse();
    let companion = match ferry_companion::build(&config).await {
        Ok(companion) => companion,
        Err(message) => {
            eprintln!("ferry-companion: {message}");
            return std::process::ExitCode::FAILURE;
        }
    };
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
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(err) = axum::serve(listener, companion.router)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("ferry-companion: {err}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
