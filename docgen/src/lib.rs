//! Man pages and shell completions generated from a binary's clap
//! definitions.
//!
//! Both binaries have a hidden `generate-docs DIR` subcommand that calls
//! [`generate`]; `scripts/build-packages.sh` runs it before it builds the
//! packages, so the pages always match the binaries' flags and nothing
//! generated is committed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use clap_complete::Shell;

/// Arguments of the hidden `generate-docs` subcommand.
#[derive(Args, Debug)]
pub struct GenerateDocsArgs {
    /// Directory to write into: `man/` gets the pages (section 1), and
    /// `completions/` the bash and zsh scripts.
    #[arg(value_name = "DIR")]
    pub out_dir: PathBuf,
}

/// Writes the man pages and completions for `command` and prints each path
/// written; exits with 1 on the first error.
pub fn run(args: &GenerateDocsArgs, command: clap::Command) -> ExitCode {
    match generate(command, &args.out_dir) {
        Ok(paths) => {
            for path in paths {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: cannot write into {}: {err}", args.out_dir.display());
            ExitCode::FAILURE
        }
    }
}

/// Writes one man page for `command` and one per visible subcommand
/// (`NAME-SUBCOMMAND.1`) into `out_dir/man`, and `NAME.bash` and `_NAME`
/// into `out_dir/completions`. Returns the files written, sorted.
pub fn generate(mut command: clap::Command, out_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let man_dir = out_dir.join("man");
    let completions_dir = out_dir.join("completions");
    fs::create_dir_all(&man_dir)?;
    fs::create_dir_all(&completions_dir)?;

    // `help SUBCOMMAND` only repeats the other pages.
    clap_mangen::generate_to(command.clone().disable_help_subcommand(true), &man_dir)?;
    let name = command.get_name().to_string();
    for shell in [Shell::Bash, Shell::Zsh] {
        clap_complete::generate_to(shell, &mut command, &name, &completions_dir)?;
    }

    let mut written = Vec::new();
    for dir in [man_dir, completions_dir] {
        for entry in fs::read_dir(dir)? {
            written.push(entry?.path());
        }
    }
    written.sort();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> clap::Command {
        clap::Command::new("sample")
            .about("A sample tool")
            .subcommand(clap::Command::new("run").about("Run it"))
            .subcommand(clap::Command::new("secret").hide(true))
    }

    #[test]
    fn generate_writes_pages_and_completions() {
        let dir = tempfile::tempdir().unwrap();

        let written = generate(sample(), dir.path()).unwrap();

        let names: Vec<String> = written
            .iter()
            .map(|path| path.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "completions/_sample",
                "completions/sample.bash",
                "man/sample-run.1",
                "man/sample.1",
            ]
        );
        let page = fs::read_to_string(dir.path().join("man/sample.1")).unwrap();
        assert!(page.contains("A sample tool"), "{page}");
    }
}
