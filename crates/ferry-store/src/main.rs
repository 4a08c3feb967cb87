//! The embedded store on its own, for benchmarks and for tools that want a local S3:
//! `ferry-store --root DIR --access-key K --secret-key S [--listen ADDR] [--bucket NAME]`.
//! Prints `ferry-store listening on http://ADDR` once it serves.

use std::net::SocketAddr;
use std::path::PathBuf;

use ferry_store::{S3_MIN_PART_SIZE, StoreConfig};

fn usage() -> ! {
    eprintln!(
        "usage: ferry-store --root DIR --access-key KEY --secret-key SECRET [--listen 127.0.0.1:0] [--bucket NAME] [--min-part-size BYTES]"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut root, mut access_key, mut secret_key) = (None, None, None);
    let mut listen: SocketAddr = "127.0.0.1:0".parse().expect("a valid address");
    let mut bucket = None;
    let mut min_part_size = S3_MIN_PART_SIZE;
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--root" => root = Some(PathBuf::from(value)),
            "--access-key" => access_key = Some(value),
            "--secret-key" => secret_key = Some(value),
            "--listen" => listen = value.parse().unwrap_or_else(|_| usage()),
            "--bucket" => bucket = Some(value),
            "--min-part-size" => min_part_size = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let (Some(root), Some(access_key), Some(secret_key)) = (root, access_key, secret_key) else {
        usage()
    };
    if let Some(bucket) = &bucket
        && let Err(err) = ferry_store::create_bucket(&root, bucket).await
    {
        eprintln!("ferry-store: cannot create bucket {bucket}: {err}");
        std::process::exit(1);
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .unwrap_or_else(|err| {
            eprintln!("ferry-store: cannot listen on {listen}: {err}");
            std::process::exit(1)
        });
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    println!("ferry-store listening on http://{addr}");
    let config = StoreConfig {
        root,
        access_key,
        secret_key,
        min_part_size,
        idle_timeout: ferry_store::IDLE_TIMEOUT,
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(err) = ferry_store::serve(listener, config, shutdown).await {
        eprintln!("ferry-store: {err}");
        std::process::exit(1);
    }
}
