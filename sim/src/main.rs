//! The replay CLI: `sim --seed N --scenario NAME [--trace] [--bug ack-before-sync] [--quiet]`
//! (`sim --list` names the scenarios)
//! runs one scenario under one seed, prints the drawn options, the event trace (with
//! `--trace`), a summary and the trace hash; the same seed always gives the same hash. Exits 1
//! when a checker failed. Meaningful only in a `--cfg madsim` build (`scripts/sim run ...`).

#[cfg(not(madsim))]
fn main() {
    eprintln!(
        "sim: build with RUSTFLAGS=\"--cfg madsim\"; use scripts/sim run --seed N --scenario NAME"
    );
    std::process::exit(2);
}

#[cfg(madsim)]
fn main() {
    use sim::options::{Bug, Options, Scenario};

    let usage = || -> ! {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        eprintln!(
            "usage: sim --seed N --scenario NAME [--trace] [--bug ack-before-sync] [--quiet]\nscenarios: {}",
            names.join(", ")
        );
        std::process::exit(2);
    };
    let mut seed = None;
    let mut scenario = None;
    let mut bug = None;
    let mut echo = false;
    let mut quiet = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seed" => seed = args.next().and_then(|s| s.parse::<u64>().ok()),
            "--scenario" => scenario = args.next().as_deref().and_then(Scenario::from_name),
            "--bug" => {
                bug = Some(
                    args.next()
                        .as_deref()
                        .and_then(Bug::from_name)
                        .unwrap_or_else(|| usage()),
                )
            }
            "--trace" => echo = true,
            "--list" => {
                for s in Scenario::ALL {
                    println!("{}", s.name());
                }
                return;
            }
            "--quiet" => quiet = true,
            _ => usage(),
        }
    }
    let (Some(seed), Some(scenario)) = (seed, scenario) else {
        usage()
    };
    let opts = Options::draw(seed, scenario, bug);
    let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    let outcome = rt.block_on(sim::run::run(opts, echo && !quiet));
    if outcome.passed() {
        println!("{}", outcome.summary());
        println!("trace hash: {:016x}", outcome.trace_hash);
    } else {
        println!("{}", outcome.failure_report());
        println!("trace hash: {:016x}", outcome.trace_hash);
        std::process::exit(1);
    }
}
