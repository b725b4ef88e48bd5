//! `replica --config FILE`: one Ordeal replica process. The harness writes the configuration
//! file and starts this binary (or `ordeal replica`, the same code).

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let config = match args.as_slice() {
        [_, flag, path] if flag == "--config" => std::path::PathBuf::from(path),
        _ => anyhow::bail!("usage: replica --config FILE"),
    };
    replica::net::run(&config)
}
