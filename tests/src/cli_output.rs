//! The operator CLI's `-o json` output as the system tests read it.

use std::process::Output;

use anyhow::{bail, Result};
use serde_json::Value;

/// What `novamedic ... -o json` printed, and its exit code.
#[derive(Debug)]
pub struct CliOutput {
    pub exit_code: i32,
    pub json: Value,
}

impl CliOutput {
    /// Parses the JSON that `novamedic ARGS -o json` printed, whatever the
    /// exit code: `restart` prints its result and exits with 1 when the
    /// outcome is rejected or failed. Output that is not JSON is an error
    /// that shows both streams.
    pub fn parse(args: &[&str], output: &Output) -> Result<CliOutput> {
        match serde_json::from_slice(&output.stdout) {
            Ok(json) => Ok(CliOutput {
                exit_code: output.status.code().unwrap_or(-1),
                json,
            }),
            Err(err) => bail!(
                "novamedic {args:?} exited with {} and printed no JSON ({err})\nstdout: {}\nstderr: {}",
                output.status,
                String::from_utf8_lossy(&output.stdout).trim_end(),
                String::from_utf8_lossy(&output.stderr).trim_end()
            ),
        }
    }

    /// Returns the JSON of a command that exited with 0; any other exit
    /// code is an error that shows the JSON.
    pub fn success(self, args: &[&str]) -> Result<Value> {
        if self.exit_code != 0 {
            bail!(
                "novamedic {args:?} exited with {}: {}",
                self.exit_code,
                self.json
            );
        }
        Ok(self.json)
    }
}
