//! `pinion`: the broker binary. The Kafka listener is built in the broker
//! issue; until then this binary says so plainly instead of pretending.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version") | Some("-V") => println!("pinion {}", env!("CARGO_PKG_VERSION")),
        _ => {
            eprintln!(
                "pinion: the Kafka listener (`pinion serve`) is not built yet; \
                 the storage engine can be exercised with `cargo run --release -p pinion-bench -- engine`"
            );
            std::process::exit(2);
        }
    }
}
