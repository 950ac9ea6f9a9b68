//! Errors of OpenStack calls, and the per-service error bodies they carry.

use serde_json::Value;

use super::Service;

/// A failed OpenStack call. Messages name the service and the URL path but
/// never a token or password: no variant contains one.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{service} returned HTTP {status} for {method} {path}: {message}{}", request_id_suffix(.request_id))]
    Status {
        service: Service,
        method: &'static str,
        path: String,
        status: u16,
        message: String,
        request_id: Option<String>,
    },
    #[error("{service} did not answer {method} {path} within {timeout_seconds} s")]
    TimedOut {
        service: Service,
        method: &'static str,
        path: String,
        timeout_seconds: u64,
    },
    #[error("cannot reach {service} for {method} {path}: {cause}")]
    Unreachable {
        service: Service,
        method: &'static str,
        path: String,
        cause: String,
    },
    #[error("{service} sent a response to {method} {path} that is not the expected JSON: {cause}")]
    Decode {
        service: Service,
        method: &'static str,
        path: String,
        cause: String,
    },
    #[error(
        "no {service} endpoint with interface {interface}{} in the service catalog; \
         set interface or region_name, or {override_key}",
        .region.as_ref().map(|region| format!(" in region {region}")).unwrap_or_default()
    )]
    NoEndpoint {
        service: Service,
        interface: String,
        region: Option<String>,
        override_key: String,
    },
    #[error("invalid TLS settings: {0}")]
    Tls(String),
}

fn request_id_suffix(request_id: &Option<String>) -> String {
    request_id
        .as_ref()
        .map(|id| format!(" (request id {id})"))
        .unwrap_or_default()
}

impl ApiError {
    /// The HTTP status of a call that got one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, ApiError::TimedOut { .. })
    }

    /// True when the service could not be reached or returned 5xx, so the
    /// failure is the cloud's, not the request's.
    pub fn is_unavailable(&self) -> bool {
        match self {
            ApiError::Unreachable { .. } | ApiError::NoEndpoint { .. } => true,
            ApiError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// Extracts the human message from an error body in `service`'s format,
/// falling back to the raw text (shortened) when the body has another shape,
/// such as a load balancer's HTML page.
pub fn error_message(service: Service, body: &str) -> String {
    let parsed = serde_json::from_str::<Value>(body).ok();
    let message = parsed.as_ref().and_then(|value| match service {
        Service::Compute | Service::BlockStorage => wrapped_fault(value),
        Service::Network => neutron_error(value),
        Service::Image => glance_error(value),
        Service::Placement => placement_error(value),
        Service::Identity => keystone_error(value),
    });
    message.unwrap_or_else(|| raw_text(body))
}

/// Nova and Cinder: `{"<faultName>": {"code": N, "message": "..."}}`.
fn wrapped_fault(value: &Value) -> Option<String> {
    let object = value.as_object()?;
    if object.len() != 1 {
        return None;
    }
    let (name, fault) = object.iter().next()?;
    let message = fault.get("message")?.as_str()?;
    Some(format!("{name}: {message}"))
}

/// Neutron: `{"NeutronError": {"type": "...", "message": "...", "detail": ""}}`.
fn neutron_error(value: &Value) -> Option<String> {
    let error = value.get("NeutronError")?;
    let message = error.get("message")?.as_str()?;
    match error.get("type").and_then(Value::as_str) {
        Some(kind) if !kind.is_empty() => Some(format!("{kind}: {message}")),
        _ => Some(message.to_string()),
    }
}

/// Glance (WebOb): `{"message": "...<br /><br />", "code": "404 Not Found",
/// "title": "Not Found"}`, where `code` is a string.
fn glance_error(value: &Value) -> Option<String> {
    let message = value.get("message")?.as_str()?;
    let message = message.replace("<br />", " ");
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    match value.get("title").and_then(Value::as_str) {
        Some(title) => Some(format!("{title}: {message}")),
        None => Some(message),
    }
}

/// Placement: `{"errors": [{"status", "title", "detail", "code"}]}`.
fn placement_error(value: &Value) -> Option<String> {
    let first = value.get("errors")?.as_array()?.first()?;
    let detail = first.get("detail").and_then(Value::as_str);
    let title = first.get("title").and_then(Value::as_str);
    match (title, detail) {
        (Some(title), Some(detail)) => Some(format!("{title}: {}", detail.trim())),
        (None, Some(text)) | (Some(text), None) => Some(text.trim().to_string()),
        (None, None) => None,
    }
}

/// Keystone: `{"error": {"code": N, "title": "...", "message": "..."}}`.
fn keystone_error(value: &Value) -> Option<String> {
    let error = value.get("error")?;
    let message = error.get("message")?.as_str()?;
    match error.get("title").and_then(Value::as_str) {
        Some(title) => Some(format!("{title}: {message}")),
        None => Some(message.to_string()),
    }
}

/// The first 300 characters of a body on one line, or a note that it was
/// empty.
fn raw_text(body: &str) -> String {
    let flat = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.is_empty() {
        return "(empty response body)".to_string();
    }
    let mut shortened: String = flat.chars().take(300).collect();
    if shortened.len() < flat.len() {
        shortened.push('…');
    }
    shortened
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_shape_parsed() {
        let cases = [
            (
                Service::Compute,
                r#"{"itemNotFound": {"code": 404, "message": "Instance x could not be found."}}"#,
                "itemNotFound: Instance x could not be found.",
            ),
            (
                Service::BlockStorage,
                r#"{"itemNotFound": {"code": 404, "message": "Volume v could not be found."}}"#,
                "itemNotFound: Volume v could not be found.",
            ),
            (
                Service::Network,
                r#"{"NeutronError": {"type": "PortNotFound", "message": "Port p could not be found.", "detail": ""}}"#,
                "PortNotFound: Port p could not be found.",
            ),
            (
                Service::Image,
                "{\"message\": \"No image found with ID i<br /><br />\\n\\n\\n\", \"code\": \"404 Not Found\", \"title\": \"Not Found\"}",
                "Not Found: No image found with ID i",
            ),
            (
                Service::Placement,
                r#"{"errors": [{"status": 404, "title": "Not Found", "detail": "No resource provider with uuid u found", "code": "placement.undefined_code"}]}"#,
                "Not Found: No resource provider with uuid u found",
            ),
            (
                Service::Identity,
                r#"{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}"#,
                "Unauthorized: The request you have made requires authentication.",
            ),
        ];
        for (service, body, expected) in cases {
            assert_eq!(error_message(service, body), expected, "{service}");
        }
    }

    #[test]
    fn other_shapes_fall_back_to_text() {
        let html = "<html><body>\n<h1>502 Bad Gateway</h1>\n</body></html>";
        assert_eq!(
            error_message(Service::Compute, html),
            "<html><body> <h1>502 Bad Gateway</h1> </body></html>"
        );
        assert_eq!(error_message(Service::Network, ""), "(empty response body)");
        let long = "x".repeat(400);
        assert_eq!(error_message(Service::Image, &long).chars().count(), 301);
    }
}
