//! `node`: namesrv | broker | standalone | admin | bench.

fn main() {
    eprintln!("node: nothing wired yet");
    std::process::exit(2);
}
