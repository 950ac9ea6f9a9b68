//! Prometheus node exporter as the comparison for the agent's footprint: a
//! child process on 127.0.0.1, scraped over plain HTTP as Prometheus does.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Where Debian's `prometheus-node-exporter` package installs the binary.
pub const BINARY: &str = "/usr/bin/prometheus-node-exporter";

const START_TIMEOUT: Duration = Duration::from_secs(30);
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running node exporter, killed on drop.
pub struct NodeExporter {
    child: Child,
    address: SocketAddr,
}

/// One scrape of `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct Scrape {
    pub duration: Duration,
    /// Response size on the wire, headers included (gzip-compressed body).
    pub bytes: usize,
}

impl NodeExporter {
    /// Starts the exporter with its default collectors on `127.0.0.1:port`
    /// and waits until it accepts connections.
    pub fn start(port: u16) -> Result<Self> {
        if !Path::new(BINARY).is_file() {
            bail!("{BINARY} not found; install it with `apt-get install prometheus-node-exporter`");
        }
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let child = Command::new(BINARY)
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {BINARY}"))?;
        let mut exporter = NodeExporter { child, address };
        exporter.wait_until_listening()?;
        Ok(exporter)
    }

    /// Host PID of the exporter.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fetches `/metrics` with the headers Prometheus sends (gzip accepted)
    /// and checks for a `200` status.
    pub fn scrape(&self) -> Result<Scrape> {
        let started = Instant::now();
        let mut stream = TcpStream::connect_timeout(&self.address, SCRAPE_TIMEOUT)
            .with_context(|| format!("cannot connect to the node exporter at {}", self.address))?;
        stream.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nUser-Agent: novamedic-bench\r\n\
             Accept: text/plain;version=0.0.4\r\nAccept-Encoding: gzip\r\n\
             Connection: close\r\n\r\n",
            self.address
        );
        stream.write_all(request.as_bytes())?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .context("cannot read the node exporter's response")?;
        let duration = started.elapsed();

        let status_line = response
            .split(|&b| b == b'\n')
            .next()
            .map(|line| String::from_utf8_lossy(line).trim().to_string())
            .unwrap_or_default();
        if !status_line.starts_with("HTTP/1.1 200") {
            bail!("node exporter returned {status_line:?} for GET /metrics");
        }
        Ok(Scrape {
            duration,
            bytes: response.len(),
        })
    }

    fn wait_until_listening(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("{BINARY} exited with {status} at start; run it by hand to see why");
            }
            if TcpStream::connect_timeout(&self.address, Duration::from_millis(100)).is_ok() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "{BINARY} did not listen on {} within {START_TIMEOUT:?}",
            self.address
        )
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
