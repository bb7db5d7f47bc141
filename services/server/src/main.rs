//! `hie`: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    hie_server::cli::run(hie_server::cli::Cli::parse())
}
