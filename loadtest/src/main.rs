use std::process::ExitCode;

use clap::Parser;
use loadtest::{report, run, Args};

fn main() -> ExitCode {
    let args = Args::parse();
    let results = match run(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadtest: {e}");
            return ExitCode::FAILURE;
        }
    };
    for r in &results {
        print!("{}", r.to_text());
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&results).expect("results serialize");
        if let Err(e) = std::fs::write(path, json + "\n") {
            eprintln!("loadtest: writing {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(path) = &args.plot {
        if let Err(e) = std::fs::write(path, report::svg_plot(&results)) {
            eprintln!("loadtest: writing {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
