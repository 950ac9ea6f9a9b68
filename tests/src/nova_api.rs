//! nova-api, nova-scheduler and Glance beside the real nova-compute of
//! [`crate::nova`], for tests that create servers through the compute API.
//!
//! The three units are installed but not enabled in the nova tree, so the
//! tests that do not need them boot no faster or slower; [`NovaApi::start`]
//! starts them in a booted node. nova-api runs with `auth_strategy = noauth2`:
//! the token is `USER:PROJECT`, and the user `admin` gets admin-only fields.
//! Glance keeps images in its file store and checks no token. Neutron is not
//! installed: the servers have no network, and a stand-in lists no ports
//! when nova-api shows a server. All of them listen on 127.0.0.1 only; the
//! requests run with curl inside the container.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::nova::{tcp_listeners, NovaNode, NOVA_COMPUTE_UNIT};
use crate::slice::POLL_INTERVAL;

/// The compute API's unit; it pulls in the scheduler and Glance.
pub const NOVA_API_UNIT: &str = "nova-api.service";
pub const NOVA_SCHEDULER_UNIT: &str = "nova-scheduler.service";
pub const GLANCE_API_UNIT: &str = "glance-api.service";

/// Stand-in for the Neutron API: it lists no ports, which nova-api requests
/// whenever it shows a server. Neutron itself is not installed.
pub const NEUTRON_STAND_IN_UNIT: &str = "neutron-stand-in.service";

/// The units [`NovaApi::start`] starts, in start order.
pub const API_UNITS: [&str; 4] = [
    GLANCE_API_UNIT,
    NEUTRON_STAND_IN_UNIT,
    NOVA_SCHEDULER_UNIT,
    NOVA_API_UNIT,
];

/// Base URL of the compute API inside the container.
pub const NOVA_API_URL: &str = "http://127.0.0.1:8774";

/// Base URL of the image API inside the container.
pub const GLANCE_API_URL: &str = "http://127.0.0.1:9292";

/// noauth2 token of the admin user in the admin project.
pub const ADMIN_TOKEN: &str = "admin:admin";

/// Compute API microversion of every request: 2.37 allows `"networks":
/// "none"` (no Neutron in the tests), 2.84 adds `details` to failed
/// instance action events.
pub const MICROVERSION: &str = "2.84";

/// Log files of the units, for failure messages.
pub const NOVA_API_LOG: &str = "/var/log/nova/nova-api.log";
pub const NOVA_SCHEDULER_LOG: &str = "/var/log/nova/nova-scheduler.log";
pub const GLANCE_API_LOG: &str = "/var/log/glance/glance-api.log";

/// TCP ports the API units add to the stack's, all on 127.0.0.1.
pub const API_PORTS: [(u16, &str); 3] = [
    (8774, "nova-api"),
    (9292, "Glance API"),
    (9696, "Neutron API stand-in"),
];

/// Time from start until the APIs answer and the scheduler reports up.
/// They took a few seconds each on a two-core VM; the margin covers builds
/// running beside them.
const API_TIMEOUT: Duration = Duration::from_secs(180);

/// Time for a server to reach a final state.
const SERVER_TIMEOUT: Duration = Duration::from_secs(180);

/// Memory of the flavor of [`NovaApi::boot_failed_server`]: 1 TiB, more than
/// the 800 000 MB nova's fake driver reports, so Placement finds no host.
const OVERSIZED_RAM_MB: u64 = 1 << 20;

/// Memory of the flavor that fits the fake host, in MB.
const SMALL_RAM_MB: u64 = 64;

/// An HTTP response: status code and body, parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Value,
}

/// The compute and image APIs of a booted nova node, called with one
/// noauth2 token.
pub struct NovaApi<'a> {
    node: &'a NovaNode,
    /// `X-Auth-Token` of every request, `USER:PROJECT`.
    token: String,
}

impl<'a> NovaApi<'a> {
    /// Starts Glance, the scheduler and nova-api in `node`, and waits until
    /// both APIs answer on loopback only and the compute API lists the
    /// scheduler and nova-compute up.
    pub fn start(node: &'a NovaNode) -> Result<Self> {
        let api = NovaApi {
            node,
            token: ADMIN_TOKEN.to_string(),
        };
        for unit in API_UNITS {
            node.start(unit)
                .with_context(|| format!("cannot start {unit}\n{}", api.diagnostics()))?;
        }
        let deadline = Instant::now() + API_TIMEOUT;
        api.wait_until(deadline, "Glance answers", || {
            Ok(api.glance("GET", "/versions", None)?.status == 200)
        })?;
        api.wait_until(deadline, "nova-api answers", || {
            Ok(api.request("GET", "/", None)?.status == 200)
        })?;
        api.require_loopback_listeners()?;
        for binary in ["nova-scheduler", "nova-compute"] {
            api.wait_until(deadline, &format!("{binary} is up"), || {
                Ok(api.service(binary)?.is_some_and(|s| s["state"] == "up"))
            })?;
        }
        Ok(api)
    }

    /// Base URL of the compute API, reachable inside the container.
    pub fn base_url(&self) -> &'static str {
        NOVA_API_URL
    }

    /// Token of the requests, for the `X-Auth-Token` header.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Returns these APIs called by the admin user in `project`. noauth2
    /// accepts any project id, and Nova counts quota usage per project, so
    /// the servers of other projects do not count against this one.
    pub fn in_project(&self, project: &str) -> NovaApi<'a> {
        NovaApi {
            node: self.node,
            token: format!("admin:{project}"),
        }
    }

    /// Sends a request to the compute API with `body` as JSON.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Response> {
        let url = format!("{NOVA_API_URL}{path}");
        let version = format!("X-OpenStack-Nova-API-Version: {MICROVERSION}");
        self.curl(method, &url, &[&version], body)
    }

    /// Sends a request to the compute API and fails unless the status is
    /// `expected`; returns the body.
    pub fn request_ok(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        expected: u16,
    ) -> Result<Value> {
        let response = self.request(method, path, body)?;
        if response.status != expected {
            bail!(
                "{method} {path} answered {} (expected {expected}): {}\n{}",
                response.status,
                response.body,
                self.diagnostics()
            );
        }
        Ok(response.body)
    }

    /// Sends a request to the image API, with `body` as JSON.
    pub fn glance(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Response> {
        let url = format!("{GLANCE_API_URL}{path}");
        self.curl(method, &url, &[], body)
    }

    /// Returns the compute API's record of the service `binary`, if listed.
    pub fn service(&self, binary: &str) -> Result<Option<Value>> {
        let body = self.request_ok("GET", "/v2.1/os-services", None, 200)?;
        let services = body["services"].as_array().cloned().unwrap_or_default();
        Ok(services.into_iter().find(|s| s["binary"] == binary))
    }

    /// Creates a server that really fails to build: its flavor requests more
    /// memory than the fake host has, so the scheduler finds no valid host
    /// and the conductor puts the server in ERROR with a fault. Returns the
    /// server's id once it is in ERROR.
    pub fn boot_failed_server(&self) -> Result<String> {
        let image = self.create_image("novamedic-image")?;
        let flavor = self.create_flavor("novamedic-oversized", OVERSIZED_RAM_MB)?;
        self.boot_server_to_error("novamedic-no-valid-host", &image, &flavor)
    }

    /// Creates a server without networks and waits until it is in ERROR.
    fn boot_server_to_error(&self, name: &str, image: &str, flavor: &str) -> Result<String> {
        let request = json!({"server": {
            "name": name,
            "imageRef": image,
            "flavorRef": flavor,
            "networks": "none",
        }});
        let body = self.request_ok("POST", "/v2.1/servers", Some(&request), 202)?;
        let Some(id) = body["server"]["id"].as_str() else {
            bail!("server create answered without an id: {body}");
        };
        self.wait_for_server_status(id, "ERROR")?;
        Ok(id.to_string())
    }

    /// Creates a server that the scheduler places on the fake host and that
    /// fails there: nova-compute is switched to nova's own
    /// `fake.FakeBuildAbortDriver`, whose spawn raises
    /// `BuildAbortException`, so nova-compute logs the failure at ERROR
    /// under the build's request id and puts the server in ERROR without a
    /// reschedule. nova-compute catches the failure, so the instance
    /// action's compute event still reads `Success`. Returns the server's
    /// id once it is in ERROR.
    pub fn boot_server_failing_on_compute(&self) -> Result<String> {
        let container = &self.node.container;
        for file in ["/etc/nova/nova.conf", "/etc/nova/nova-compute.conf"] {
            container.exec_ok(&[
                "sed",
                "-i",
                "s/^compute_driver *= *fake.FakeDriver$/compute_driver = fake.FakeBuildAbortDriver/",
                file,
            ])?;
        }
        // Before the spawn, nova-compute builds the image's URL for its
        // notification. Without [glance] api_servers it looks Glance up in
        // the request's service catalog, which noauth2 leaves empty, and
        // the build fails there with EmptyCatalog.
        container.exec_ok(&[
            "sh",
            "-c",
            r#"printf '\n[glance]\napi_servers = %s\n' "$1" >> /etc/nova/nova-compute.conf"#,
            "sh",
            GLANCE_API_URL,
        ])?;
        // The scheduler skips a host whose heartbeat is older than
        // service_down_time (10 s here), and nova-compute sends none while
        // it restarts, so wait for a heartbeat newer than the restart: the
        // old process is gone once systemctl returns.
        let heartbeat = |service: Option<Value>| service.map(|s| s["updated_at"].clone());
        container.systemctl_ok(&["restart", NOVA_COMPUTE_UNIT])?;
        let before = heartbeat(self.service("nova-compute")?);
        let deadline = Instant::now() + API_TIMEOUT;
        self.wait_until(deadline, "the restarted nova-compute is up", || {
            let service = self.service("nova-compute")?;
            let up = service.as_ref().is_some_and(|s| s["state"] == "up");
            Ok(up && heartbeat(service) != before)
        })?;
        // The stack never discovers hosts on its own, and the conductor
        // sends a build only to a host mapped to a cell.
        // SQLite lets one writer in, so a busy conductor or API makes
        // nova-manage fail with "database is locked"; it is run again.
        let discover = [
            "runuser",
            "-u",
            "nova",
            "--",
            "nova-manage",
            "--config-file",
            "/etc/nova/nova.conf",
            "--config-file",
            "/etc/nova/nova-conductor.conf",
            "cell_v2",
            "discover_hosts",
        ];
        let deadline = Instant::now() + API_TIMEOUT;
        self.wait_until(deadline, "nova-manage maps the compute host", || {
            Ok(container.exec(&discover)?.status.success())
        })?;
        let image = self.create_image("novamedic-image-spawn")?;
        let flavor = self.create_flavor("novamedic-small", SMALL_RAM_MB)?;
        self.boot_server_to_error("novamedic-spawn-aborted", &image, &flavor)
    }

    /// Returns the server `id` as the admin views it.
    pub fn server(&self, id: &str) -> Result<Value> {
        let body = self.request_ok("GET", &format!("/v2.1/servers/{id}"), None, 200)?;
        Ok(body["server"].clone())
    }

    /// Waits until server `id` has `status`; fails early when it reaches
    /// another final state.
    pub fn wait_for_server_status(&self, id: &str, status: &str) -> Result<Value> {
        let deadline = Instant::now() + SERVER_TIMEOUT;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            last = self.server(id)?;
            if last["status"] == status {
                return Ok(last);
            }
            if ["ACTIVE", "ERROR"].iter().any(|s| last["status"] == *s) {
                break;
            }
            thread::sleep(POLL_INTERVAL);
        }
        bail!(
            "server {id} is not {status}: {last}\n{}",
            self.diagnostics()
        )
    }

    /// Creates a flavor with `ram_mb` of memory, one vCPU and a 1 GB disk,
    /// and returns its id.
    pub fn create_flavor(&self, name: &str, ram_mb: u64) -> Result<String> {
        let request = json!({"flavor": {"name": name, "ram": ram_mb, "vcpus": 1, "disk": 1}});
        let body = self.request_ok("POST", "/v2.1/flavors", Some(&request), 200)?;
        match body["flavor"]["id"].as_str() {
            Some(id) => Ok(id.to_string()),
            None => bail!("flavor create answered without an id: {body}"),
        }
    }

    /// Creates a raw image of 1 MiB of zeros in Glance's file store, waits
    /// until it is active and returns its id. The image keeps Glance's
    /// default visibility: making it public needs the admin role, which no
    /// request has without Keystone. Every request is an admin context
    /// there, so nova reads the image all the same.
    pub fn create_image(&self, name: &str) -> Result<String> {
        let request = json!({
            "name": name,
            "disk_format": "raw",
            "container_format": "bare",
        });
        let created = self.glance("POST", "/v2/images", Some(&request))?;
        let Some(id) = created.body["id"].as_str().map(str::to_string) else {
            bail!(
                "image create answered {}: {}\n{}",
                created.status,
                created.body,
                self.diagnostics()
            );
        };
        let data = "/tmp/novamedic-image.raw";
        self.node.container.write_file(data, &vec![0u8; 1 << 20])?;
        let url = format!("{GLANCE_API_URL}/v2/images/{id}/file");
        let upload = self.curl_raw(&[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{data}"),
            &url,
        ])?;
        if upload.status != 204 {
            bail!(
                "image upload answered {}: {}\n{}",
                upload.status,
                upload.body,
                self.diagnostics()
            );
        }
        let image = self.glance("GET", &format!("/v2/images/{id}"), None)?;
        if image.body["status"] != "active" {
            bail!("image {id} is not active after its upload: {}", image.body);
        }
        Ok(id)
    }

    /// Returns the state of the API units and the tails of their logs, and
    /// the stack's diagnostics, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut text = String::new();
        for unit in API_UNITS {
            let state = self
                .node
                .container
                .unit_property(unit, "ActiveState")
                .unwrap_or_else(|err| format!("unknown ({err:#})"));
            text.push_str(&format!("--- {unit}: {state} ---\n"));
            text.push_str(&self.node.journal(unit, 10));
        }
        for log in [NOVA_API_LOG, NOVA_SCHEDULER_LOG, GLANCE_API_LOG] {
            text.push_str(&format!("--- tail of {log} ---\n"));
            match self.node.container.exec(&["tail", "-n", "30", log]) {
                Ok(output) => text.push_str(&String::from_utf8_lossy(&output.stdout)),
                Err(err) => text.push_str(&format!("cannot read it: {err:#}\n")),
            }
        }
        text.push_str(&self.node.diagnostics());
        text
    }

    fn curl(
        &self,
        method: &str,
        url: &str,
        headers: &[&str],
        body: Option<&Value>,
    ) -> Result<Response> {
        let token = format!("X-Auth-Token: {}", self.token);
        let mut args = vec!["-X", method, "-H", &token];
        for header in headers {
            args.extend(["-H", header]);
        }
        let json = body.map(Value::to_string);
        if let Some(json) = &json {
            args.extend([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                json,
            ]);
        }
        args.push(url);
        self.curl_raw(&args)
    }

    /// Runs curl inside the container with `args`; the status code comes
    /// last on its own line.
    fn curl_raw(&self, args: &[&str]) -> Result<Response> {
        let mut argv = vec!["curl", "-sS", "--max-time", "60", "-w", "\n%{http_code}"];
        argv.extend_from_slice(args);
        let output = self.node.container.exec_ok(&argv)?;
        let (body, status) = output.rsplit_once('\n').unwrap_or(("", &output));
        let status = status
            .trim()
            .parse()
            .with_context(|| format!("curl printed no status code: {output:?}"))?;
        let body = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()));
        Ok(Response { status, body })
    }

    fn wait_until(
        &self,
        deadline: Instant,
        what: &str,
        mut ready: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let mut last = String::from("not yet");
        while Instant::now() < deadline {
            match ready() {
                Ok(true) => return Ok(()),
                Ok(false) => last = String::from("not yet"),
                Err(err) => last = format!("{err:#}"),
            }
            thread::sleep(POLL_INTERVAL);
        }
        bail!(
            "timed out waiting until {what} (last: {last})\n{}",
            self.diagnostics()
        )
    }

    /// Fails unless each API port listens, on loopback only.
    fn require_loopback_listeners(&self) -> Result<()> {
        let listeners = tcp_listeners()?;
        for (port, what) in API_PORTS {
            let addresses: Vec<_> = listeners.iter().filter(|(_, p)| *p == port).collect();
            if addresses.is_empty() {
                bail!("nothing listens on port {port} ({what}) although it answers");
            }
            if let Some((address, _)) = addresses.iter().find(|(a, _)| !a.is_loopback()) {
                bail!("port {port} ({what}) listens on {address}; the tests use loopback only");
            }
        }
        Ok(())
    }
}
