//! The signature catalogue: fault descriptions kept as TOML data.
//!
//! The crate ships a catalogue (`catalogue/*.toml`, compiled in); operators add or
//! replace signatures with files in a directory, by default [`DEFAULT_OPERATOR_DIR`].
//! An operator signature with the id of a shipped one replaces it. A file or
//! signature that fails to load is reported as a [`LoadError`] and skipped, so one
//! bad file never disables the rest.
//!
//! Signature fields (all required unless marked optional):
//! - `id`: unique name;
//! - `fault_kind`: one of the [`FaultKind`] names;
//! - `severity`: `critical` (nova-compute exits or cannot start), `error` or `warning`;
//! - `priority` (optional, default 100): when a record matches several signatures,
//!   the lowest priority wins, so specific causes (a missing image) beat the generic
//!   symptom they produce (a failed spawn);
//! - `patterns`: regexes (Rust `regex` syntax) searched in the record's whole text,
//!   traceback and continuation lines included;
//! - `levels` (optional, default `["WARNING", "ERROR", "CRITICAL"]`): levels of the
//!   record's first line that the signature accepts;
//! - `markers` (optional): literal strings, one of which must occur in a DEBUG, INFO
//!   or AUDIT record before any regex runs on it. Required when `levels` admits one of
//!   those levels or when `recovery` is set, because such records are only searched
//!   when a marker occurs (that is what keeps routine records cheap);
//! - `restart_helps`, `restart_reason`: whether restarting nova-compute clears the fault, and why;
//! - `advice`: what the operator should do; `{name}` is replaced by the named
//!   capture `name` of a `detail_patterns` regex that matches the record;
//! - `detail_patterns` (optional): regexes with named captures for `advice`;
//! - `window_seconds`: how long the fault stays active without recurring;
//! - `recovery` (optional): regexes of records that end the fault.
//!
//! A pattern written in ASCII only is compiled with Unicode classes off, so `\w`,
//! `\d`, `\s` and `\b` take their ASCII meaning. Unicode `\w` alone compiles to an
//! automaton of hundreds of KiB, and nova's exception and option names are ASCII. A pattern that needs Unicode to compile (`\S` or `.` match any character,
//! not any byte) or that contains non-ASCII text keeps Unicode.

use crate::header::Level;
use crate::markers::MarkerSet;
use regex::{Regex, RegexBuilder};
use regex_automata::meta;
use regex_automata::{Input, MatchKind};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Directory of operator signature files read by default.
pub const DEFAULT_OPERATOR_DIR: &str = "/etc/novamedic/signatures.d";

/// Upper bound of the compiled program of a whole set, in bytes. Only what the
/// patterns need is allocated; past the bound, [`compile`] drops signatures.
const SET_SIZE_LIMIT_BYTES: usize = 64 << 20;

/// Upper bound of the lazy DFA's cache of one regex or set, per thread that
/// searches, in bytes. The regex crate's default is about 2 MiB a regex, most of
/// it never needed by the catalogue's literal-heavy patterns; when a search fills
/// the cache, the crate clears it and carries on (falling back to a slower engine
/// only if that keeps happening).
const DFA_CACHE_LIMIT_BYTES: usize = 256 << 10;

const SHIPPED: [(&str, &str); 4] = [
    (
        "catalogue/hypervisor.toml",
        include_str!("../catalogue/hypervisor.toml"),
    ),
    (
        "catalogue/services.toml",
        include_str!("../catalogue/services.toml"),
    ),
    (
        "catalogue/instances.toml",
        include_str!("../catalogue/instances.toml"),
    ),
    (
        "catalogue/configuration.toml",
        include_str!("../catalogue/configuration.toml"),
    ),
];

/// Root-cause class of a fault, as operators triage it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    HypervisorConnection,
    Messaging,
    Placement,
    Image,
    Network,
    Volume,
    HostResources,
    Scheduling,
    ServiceHung,
    DatabaseConductor,
    Configuration,
    Authentication,
    InstanceSpawn,
    Migration,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::HypervisorConnection => "hypervisor_connection",
            FaultKind::Messaging => "messaging",
            FaultKind::Placement => "placement",
            FaultKind::Image => "image",
            FaultKind::Network => "network",
            FaultKind::Volume => "volume",
            FaultKind::HostResources => "host_resources",
            FaultKind::Scheduling => "scheduling",
            FaultKind::ServiceHung => "service_hung",
            FaultKind::DatabaseConductor => "database_conductor",
            FaultKind::Configuration => "configuration",
            FaultKind::Authentication => "authentication",
            FaultKind::InstanceSpawn => "instance_spawn",
            FaultKind::Migration => "migration",
        }
    }

    /// Kinds where nova-compute keeps retrying a dependency by itself: while one is
    /// active, restarting nova-compute only interrupts the retry.
    pub fn is_dependency_outage(self) -> bool {
        matches!(
            self,
            FaultKind::Messaging | FaultKind::Placement | FaultKind::DatabaseConductor
        )
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Severity of a fault. `None` means the node's log shows no fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    None,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::None => "none",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

/// A loaded, validated signature.
#[derive(Debug, Clone)]
pub struct Signature {
    pub id: String,
    pub fault_kind: FaultKind,
    pub severity: Severity,
    pub priority: u32,
    pub levels: Vec<Level>,
    pub patterns: Vec<String>,
    pub markers: Vec<String>,
    pub restart_helps: bool,
    pub restart_reason: String,
    pub advice: String,
    pub detail_patterns: Vec<Regex>,
    pub window_seconds: u64,
    pub recovery: Vec<String>,
    /// File the signature came from (`catalogue/…` for shipped ones).
    pub source: String,
}

impl Signature {
    /// Renders `advice` with the named captures of `detail_patterns` found in `text`.
    pub fn render_advice(&self, text: &str) -> String {
        let mut advice = self.advice.clone();
        for pattern in &self.detail_patterns {
            let Some(captures) = pattern.captures(text) else {
                continue;
            };
            for name in pattern.capture_names().flatten() {
                if let Some(value) = captures.name(name) {
                    advice =
                        advice.replace(&format!("{{{name}}}"), &format!("`{}`", value.as_str()));
                }
            }
        }
        for pattern in &self.detail_patterns {
            for name in pattern.capture_names().flatten() {
                advice = advice.replace(&format!("{{{name}}}"), "(named in the log record)");
            }
        }
        advice
    }
}

/// A signature file or entry that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadError {
    pub file: String,
    pub signature_id: Option<String>,
    pub error: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.signature_id {
            Some(id) => write!(f, "{}: signature {id:?}: {}", self.file, self.error),
            None => write!(f, "{}: {}", self.file, self.error),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureSpec {
    id: String,
    fault_kind: FaultKind,
    severity: Severity,
    #[serde(default = "default_priority")]
    priority: u32,
    patterns: Vec<String>,
    levels: Option<Vec<String>>,
    #[serde(default)]
    markers: Vec<String>,
    restart_helps: bool,
    restart_reason: String,
    advice: String,
    #[serde(default)]
    detail_patterns: Vec<String>,
    window_seconds: u64,
    #[serde(default)]
    recovery: Vec<String>,
}

fn default_priority() -> u32 {
    100
}

/// Patterns searched together, as `regex::RegexSet` does, but built without
/// the parts that cost memory and bring nothing to this search:
/// - the literal prefilter: for the catalogue's hundred-odd exception names it
///   is an Aho-Corasick DFA of about 2 MiB, and a set search must find every
///   matching pattern, so it scans the whole record with the lazy DFA anyway;
/// - the one-pass DFA, built for capture groups, which a set never reports.
///
/// The lazy DFA's cache is capped at [`DFA_CACHE_LIMIT_BYTES`].
#[derive(Debug, Clone)]
pub(crate) struct PatternSet {
    regex: meta::Regex,
}

impl PatternSet {
    fn new(patterns: &[String]) -> Result<PatternSet, String> {
        let config = meta::Config::new()
            .match_kind(MatchKind::All)
            .utf8_empty(true)
            .which_captures(regex_automata::nfa::thompson::WhichCaptures::None)
            .auto_prefilter(false)
            .onepass(false)
            .nfa_size_limit(Some(SET_SIZE_LIMIT_BYTES))
            .hybrid_cache_capacity(DFA_CACHE_LIMIT_BYTES);
        let syntax = regex_automata::util::syntax::Config::new().utf8(true);
        let regex = meta::Builder::new()
            .configure(config)
            .syntax(syntax)
            .build_many(patterns)
            .map_err(|e| e.to_string())?;
        Ok(PatternSet { regex })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.regex.pattern_len() == 0
    }

    /// Indexes of the patterns that match somewhere in `text`, ascending.
    pub(crate) fn matches(&self, text: &str) -> impl Iterator<Item = usize> {
        let mut found = regex_automata::PatternSet::new(self.regex.pattern_len());
        self.regex
            .which_overlapping_matches(&Input::new(text), &mut found);
        found
            .iter()
            .map(|id| id.as_usize())
            .collect::<Vec<_>>()
            .into_iter()
    }
}

/// Validated signatures plus the compiled matchers the classifier runs.
#[derive(Debug, Clone)]
pub struct Catalogue {
    pub(crate) signatures: Vec<Signature>,
    pub(crate) fault_set: PatternSet,
    pub(crate) fault_owner: Vec<usize>,
    pub(crate) recovery_set: PatternSet,
    pub(crate) recovery_owner: Vec<usize>,
    pub(crate) markers: MarkerSet,
}

impl Catalogue {
    /// Loads the shipped catalogue only.
    pub fn shipped() -> (Catalogue, Vec<LoadError>) {
        Self::build(Vec::new())
    }

    /// Loads the shipped catalogue plus every `*.toml` file in `operator_dir`
    /// (a missing directory is not an error: most nodes have none).
    pub fn load(operator_dir: Option<&Path>) -> (Catalogue, Vec<LoadError>) {
        let mut errors = Vec::new();
        let files = operator_dir
            .map(|d| list_toml_files(d, &mut errors))
            .unwrap_or_default();
        let mut operator_texts = Vec::new();
        for path in files {
            match std::fs::read_to_string(&path) {
                Ok(text) => operator_texts.push((path.display().to_string(), text)),
                Err(err) => errors.push(LoadError {
                    file: path.display().to_string(),
                    signature_id: None,
                    error: format!("cannot read file: {err}"),
                }),
            }
        }
        let (catalogue, mut build_errors) = Self::build(operator_texts);
        errors.append(&mut build_errors);
        (catalogue, errors)
    }

    /// Builds a catalogue from the shipped files and the given `(file name, TOML text)` pairs.
    pub fn build(operator_files: Vec<(String, String)>) -> (Catalogue, Vec<LoadError>) {
        let mut errors = Vec::new();
        let mut signatures: Vec<Signature> = Vec::new();
        let mut by_id: HashMap<String, usize> = HashMap::new();
        let shipped = SHIPPED.iter().map(|(n, t)| (n.to_string(), t.to_string()));
        for (file, text) in shipped.chain(operator_files) {
            for signature in parse_file(&file, &text, &mut errors) {
                match by_id.get(&signature.id) {
                    Some(&index) => signatures[index] = signature,
                    None => {
                        by_id.insert(signature.id.clone(), signatures.len());
                        signatures.push(signature);
                    }
                }
            }
        }
        let catalogue = compile(signatures, &mut errors);
        (catalogue, errors)
    }

    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    pub fn signature(&self, index: usize) -> &Signature {
        &self.signatures[index]
    }

    /// Returns every fault pattern, for tools that run the same search elsewhere (`grep -E -f`).
    pub fn fault_patterns(&self) -> impl Iterator<Item = &str> {
        self.signatures
            .iter()
            .flat_map(|s| s.patterns.iter().map(String::as_str))
    }
}

fn list_toml_files(dir: &Path, errors: &mut Vec<LoadError>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(err) => {
            errors.push(LoadError {
                file: dir.display().to_string(),
                signature_id: None,
                error: format!("cannot list signature directory: {err}"),
            });
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn parse_file(file: &str, text: &str, errors: &mut Vec<LoadError>) -> Vec<Signature> {
    let error = |id: Option<String>, message: String| LoadError {
        file: file.to_string(),
        signature_id: id,
        error: message,
    };
    let table: toml::Table = match toml::from_str(text) {
        Ok(table) => table,
        Err(err) => {
            errors.push(error(None, format!("invalid TOML: {err}")));
            return Vec::new();
        }
    };
    let Some(toml::Value::Array(entries)) = table.get("signature") else {
        errors.push(error(None, "no [[signature]] entries".to_string()));
        return Vec::new();
    };
    let mut signatures = Vec::new();
    for entry in entries {
        let id = entry.get("id").and_then(|v| v.as_str()).map(str::to_string);
        let spec: SignatureSpec = match entry.clone().try_into() {
            Ok(spec) => spec,
            Err(err) => {
                errors.push(error(id, format!("invalid signature: {err}")));
                continue;
            }
        };
        match validate(spec, file) {
            Ok(signature) => signatures.push(signature),
            Err(message) => errors.push(error(id, message)),
        }
    }
    signatures
}

fn validate(spec: SignatureSpec, file: &str) -> Result<Signature, String> {
    if spec.patterns.is_empty() {
        return Err("`patterns` is empty; give at least one regex".to_string());
    }
    if spec.severity == Severity::None {
        return Err("`severity` must be critical, error or warning".to_string());
    }
    if spec.window_seconds == 0 {
        return Err("`window_seconds` must be above 0".to_string());
    }
    for pattern in spec.patterns.iter().chain(&spec.recovery) {
        lean_pattern(pattern).map_err(|e| format!("invalid regex {pattern:?}: {e}"))?;
    }
    let detail_patterns = spec
        .detail_patterns
        .iter()
        .map(|p| lean_regex(p).map_err(|e| format!("invalid detail regex {p:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let levels = match &spec.levels {
        None => vec![Level::Warning, Level::Error, Level::Critical],
        Some(names) => names
            .iter()
            .map(|n| {
                Level::parse(n.as_bytes()).ok_or_else(|| {
                    format!(
                        "invalid level {n:?}; use DEBUG, INFO, AUDIT, WARNING, ERROR or CRITICAL"
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let needs_markers = levels.iter().any(|l| !l.is_problem()) || !spec.recovery.is_empty();
    if needs_markers && spec.markers.is_empty() {
        return Err(
            "`markers` is empty, but the signature matches DEBUG/INFO/AUDIT records or has \
                    `recovery` patterns; list literal strings that occur in those records"
                .to_string(),
        );
    }
    Ok(Signature {
        id: spec.id,
        fault_kind: spec.fault_kind,
        severity: spec.severity,
        priority: spec.priority,
        levels,
        patterns: spec.patterns,
        markers: spec.markers,
        restart_helps: spec.restart_helps,
        restart_reason: spec.restart_reason,
        advice: spec.advice,
        detail_patterns,
        window_seconds: spec.window_seconds,
        recovery: spec.recovery,
        source: file.to_string(),
    })
}

/// Compiles the sets. A set that exceeds the regex size limit drops the signatures
/// of the last-loaded file one at a time until it fits, and reports each dropped one.
fn compile(mut signatures: Vec<Signature>, errors: &mut Vec<LoadError>) -> Catalogue {
    loop {
        match try_compile(&signatures) {
            Ok(catalogue) => return catalogue,
            Err(err) => {
                let Some(dropped) = signatures.pop() else {
                    unreachable!("an empty regex set always compiles")
                };
                errors.push(LoadError {
                    file: dropped.source,
                    signature_id: Some(dropped.id),
                    error: format!("signature dropped: combined patterns do not compile: {err}"),
                });
            }
        }
    }
}

/// Returns the form of `pattern` that the catalogue compiles: with Unicode
/// classes off when `pattern` is ASCII and compiles that way, else `pattern`
/// itself. Fails when `pattern` does not compile at all.
fn lean_pattern(pattern: &str) -> Result<String, regex::Error> {
    if pattern.is_ascii() {
        let ascii = format!("(?-u){pattern}");
        if lean_builder(&ascii).build().is_ok() {
            return Ok(ascii);
        }
    }
    lean_builder(pattern).build()?;
    Ok(pattern.to_string())
}

/// Compiles `pattern` in its [`lean_pattern`] form.
fn lean_regex(pattern: &str) -> Result<Regex, regex::Error> {
    lean_builder(&lean_pattern(pattern)?).build()
}

fn lean_builder(pattern: &str) -> RegexBuilder {
    let mut builder = RegexBuilder::new(pattern);
    builder.dfa_size_limit(DFA_CACHE_LIMIT_BYTES);
    builder
}

fn try_compile(signatures: &[Signature]) -> Result<Catalogue, String> {
    let owners = |select: fn(&Signature) -> &Vec<String>| -> (Vec<&str>, Vec<usize>) {
        signatures
            .iter()
            .enumerate()
            .flat_map(|(i, s)| select(s).iter().map(move |p| (p.as_str(), i)))
            .unzip()
    };
    let (fault_patterns, fault_owner) = owners(|s| &s.patterns);
    let (recovery_patterns, recovery_owner) = owners(|s| &s.recovery);
    let build = |patterns: &[&str]| {
        let lean = patterns
            .iter()
            .map(|p| lean_pattern(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        PatternSet::new(&lean)
    };
    let markers: Vec<&str> = signatures
        .iter()
        .flat_map(|s| s.markers.iter().map(String::as_str))
        .collect();
    let markers = MarkerSet::new(&markers)?;
    Ok(Catalogue {
        signatures: signatures.to_vec(),
        fault_set: build(&fault_patterns)?,
        fault_owner,
        recovery_set: build(&recovery_patterns)?,
        recovery_owner,
        markers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_catalogue_loads_without_errors() {
        let (catalogue, errors) = Catalogue::shipped();
        assert!(errors.is_empty(), "shipped catalogue errors: {errors:?}");
        assert!(catalogue.signatures().len() >= 14);
    }

    #[test]
    fn shipped_catalogue_covers_every_fault_kind() {
        let (catalogue, _) = Catalogue::shipped();
        let kinds = [
            FaultKind::HypervisorConnection,
            FaultKind::Messaging,
            FaultKind::Placement,
            FaultKind::Image,
            FaultKind::Network,
            FaultKind::Volume,
            FaultKind::HostResources,
            FaultKind::Scheduling,
            FaultKind::ServiceHung,
            FaultKind::DatabaseConductor,
            FaultKind::Configuration,
            FaultKind::Authentication,
            FaultKind::InstanceSpawn,
            FaultKind::Migration,
        ];
        for kind in kinds {
            let found = catalogue.signatures().iter().any(|s| s.fault_kind == kind);
            assert!(found, "no shipped signature for fault kind {kind}");
        }
    }

    #[test]
    fn operator_file_errors_are_reported_and_loading_continues() {
        let bad_regex = r#"
[[signature]]
id = "bad-regex"
fault_kind = "image"
severity = "error"
patterns = ["(unclosed"]
restart_helps = false
restart_reason = "r"
advice = "a"
window_seconds = 60

[[signature]]
id = "good-one"
fault_kind = "image"
severity = "warning"
patterns = ["OperatorSpecificImageError"]
restart_helps = false
restart_reason = "r"
advice = "a"
window_seconds = 60
"#;
        let files = vec![
            ("ops/a.toml".to_string(), bad_regex.to_string()),
            ("ops/b.toml".to_string(), "not = [valid".to_string()),
        ];
        let (catalogue, errors) = Catalogue::build(files);
        assert_eq!(errors.len(), 2, "errors: {errors:?}");
        assert_eq!(errors[0].file, "ops/a.toml");
        assert_eq!(errors[0].signature_id.as_deref(), Some("bad-regex"));
        assert!(errors[0].error.contains("(unclosed"));
        assert_eq!(errors[1].file, "ops/b.toml");
        assert!(catalogue.signatures().iter().any(|s| s.id == "good-one"));
        let (shipped, _) = Catalogue::shipped();
        assert_eq!(catalogue.signatures().len(), shipped.signatures().len() + 1);
    }

    #[test]
    fn operator_signature_without_markers_for_info_is_rejected() {
        let text = r#"
[[signature]]
id = "info-no-markers"
fault_kind = "network"
severity = "warning"
levels = ["INFO"]
patterns = ["something"]
restart_helps = false
restart_reason = "r"
advice = "a"
window_seconds = 60
"#;
        let (_, errors) = Catalogue::build(vec![("ops/c.toml".into(), text.into())]);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].error.contains("markers"), "{}", errors[0]);
    }

    #[test]
    fn ascii_patterns_drop_unicode_and_others_keep_it() {
        assert_eq!(lean_pattern(r"cinder\.\w+").unwrap(), r"(?-u)cinder\.\w+");
        // `\S` and `[^']` match any character; without Unicode they would match
        // any byte, which a `str` regex rejects.
        assert_eq!(lean_pattern(r"Image \S+ x").unwrap(), r"Image \S+ x");
        assert_eq!(lean_pattern("[^']*-sock").unwrap(), "[^']*-sock");
        assert_eq!(lean_pattern("(?i)ошибка").unwrap(), "(?i)ошибка");
        assert!(lean_pattern("(unclosed").is_err());
    }

    #[test]
    fn operator_pattern_needing_unicode_still_matches() {
        let text = r#"
[[signature]]
id = "cyrillic"
fault_kind = "volume"
severity = "error"
patterns = ['(?i)ошибка тома \w+']
restart_helps = false
restart_reason = "r"
advice = "a"
window_seconds = 60
"#;
        let (catalogue, errors) = Catalogue::build(vec![("ops/u.toml".into(), text.into())]);
        assert!(errors.is_empty(), "{errors:?}");
        let found = catalogue
            .classify_text("ОШИБКА ТОМА Диск1", Level::Error)
            .fault;
        assert_eq!(
            found.map(|i| catalogue.signature(i).id.as_str()),
            Some("cyrillic")
        );
    }

    #[test]
    fn operator_directory_is_read_from_disk() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("x.toml"), "garbage = ").expect("write");
        std::fs::write(dir.path().join("ignored.txt"), "garbage = ").expect("write");
        let (_, errors) = Catalogue::load(Some(dir.path()));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].file.ends_with("x.toml"));
        let (_, errors) = Catalogue::load(Some(&dir.path().join("missing")));
        assert!(errors.is_empty());
    }
}
