use std::process::ExitCode;

use clap::Parser;
use loadtest::{report, run, Args};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(joins) = args.joins {
        return run_joins(&args, joins);
    }
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
    if !write_json(&args, &results) {
        return ExitCode::FAILURE;
    }
    if let Some(path) = &args.plot {
        if let Err(e) = std::fs::write(path, report::svg_plot(&results)) {
            eprintln!("loadtest: writing {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// `--joins N`: the join benchmark (no media).
fn run_joins(args: &Args, joins: usize) -> ExitCode {
    let result = match loadtest::joins::run(args, joins) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadtest: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", result.to_text());
    if !write_json(args, &result) {
        return ExitCode::FAILURE;
    }
    if result.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `--json PATH`: writes `value` there; false (and says why) if it could not.
fn write_json(args: &Args, value: &impl serde::Serialize) -> bool {
    let Some(path) = &args.json else {
        return true;
    };
    let json = serde_json::to_string_pretty(value).expect("results serialize");
    match std::fs::write(path, json + "\n") {
        Ok(()) => true,
        Err(e) => {
            eprintln!("loadtest: writing {path}: {e}");
            false
        }
    }
}
