//! `novamedic-agent classify`: diagnoses copied nova-compute logs offline.
//!
//! Each file is read once, streamed, and diagnosed on its own with the
//! shipped catalogue plus the operator's signature files. Files ending in
//! `.gz` (logrotate's compressed copies) are decompressed on the fly.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use novamedic_logs::{diagnose, render_text, Catalogue, DiagnoseOptions, Diagnosis, LoadError};
use serde::Serialize;
use time::UtcOffset;

/// The files to classify and the catalogue and zone to read them with.
#[derive(Debug, Clone)]
pub struct ClassifyRequest {
    pub files: Vec<PathBuf>,
    pub signatures_dir: PathBuf,
    /// Offset of the zone the logs were written in.
    pub utc_offset: UtcOffset,
}

/// The diagnosis of one file, or why it could not be read.
#[derive(Debug, Serialize)]
pub struct FileDiagnosis {
    pub file: String,
    /// `null` when the file could not be read.
    pub diagnosis: Option<Diagnosis>,
    /// Read error of the file; `null` when it was read.
    pub error: Option<String>,
}

/// The outcome of one `classify` run.
#[derive(Debug, Serialize)]
pub struct ClassifyOutcome {
    pub files: Vec<FileDiagnosis>,
    /// Operator signature files or entries that failed to load.
    pub catalogue_errors: Vec<LoadError>,
}

impl ClassifyOutcome {
    /// True when every file was read.
    pub fn all_read(&self) -> bool {
        self.files.iter().all(|f| f.error.is_none())
    }
}

/// Diagnoses every file of `request`.
pub fn classify_files(request: &ClassifyRequest) -> ClassifyOutcome {
    let (catalogue, catalogue_errors) = Catalogue::load(Some(&request.signatures_dir));
    let catalogue = Arc::new(catalogue);
    let options = DiagnoseOptions {
        utc_offset: request.utc_offset,
        ..Default::default()
    };
    let files = request
        .files
        .iter()
        .map(
            |path| match diagnose_file(catalogue.clone(), path, &options) {
                Ok(diagnosis) => FileDiagnosis {
                    file: path.display().to_string(),
                    diagnosis: Some(diagnosis),
                    error: None,
                },
                Err(err) => FileDiagnosis {
                    file: path.display().to_string(),
                    diagnosis: None,
                    error: Some(format!("cannot read {}: {err}", path.display())),
                },
            },
        )
        .collect();
    ClassifyOutcome {
        files,
        catalogue_errors,
    }
}

fn diagnose_file(
    catalogue: Arc<Catalogue>,
    path: &Path,
    options: &DiagnoseOptions,
) -> io::Result<Diagnosis> {
    let file = File::open(path)?;
    if file.metadata()?.is_dir() {
        return Err(io::Error::other("is a directory, expected a log file"));
    }
    let reader: Box<dyn Read> = if is_gzip(path) {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(file)
    };
    diagnose(catalogue, reader, options).map_err(|err| {
        if is_gzip(path) {
            io::Error::new(err.kind(), format!("invalid gzip data: {err}"))
        } else {
            err
        }
    })
}

fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// Renders `outcome` as text: one block per file.
pub fn render(outcome: &ClassifyOutcome) -> String {
    let mut text = String::new();
    for error in &outcome.catalogue_errors {
        text.push_str(&format!(
            "warning: signature file {error} (not loaded; using the shipped catalogue and the \
             valid files)\n"
        ));
    }
    for (index, file) in outcome.files.iter().enumerate() {
        if index > 0 || !outcome.catalogue_errors.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("== {}\n", file.file));
        match (&file.diagnosis, &file.error) {
            (Some(diagnosis), _) => text.push_str(&render_text(diagnosis)),
            (None, Some(error)) => text.push_str(&format!("error: {error}\n")),
            (None, None) => {}
        }
    }
    text
}

/// Parses a UTC offset written `+HH:MM`, `-HH:MM` or `Z`.
pub fn parse_utc_offset(text: &str) -> Result<UtcOffset, String> {
    if text == "Z" || text == "z" {
        return Ok(UtcOffset::UTC);
    }
    let format = time::macros::format_description!("[offset_hour sign:mandatory]:[offset_minute]");
    UtcOffset::parse(text, &format).map_err(|_| {
        format!("invalid UTC offset {text:?}: expected +HH:MM or -HH:MM, for example +02:00")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const LIBVIRT_DOWN: &str = "2024-03-05 10:00:00.000 7 ERROR nova.compute.manager [-] Connection to libvirt failed: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory\n";

    fn request(files: Vec<PathBuf>, signatures_dir: &Path) -> ClassifyRequest {
        ClassifyRequest {
            files,
            signatures_dir: signatures_dir.to_path_buf(),
            utc_offset: UtcOffset::UTC,
        }
    }

    #[test]
    fn plain_and_gzip_files_are_diagnosed_alike() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("nova-compute.log");
        std::fs::write(&plain, LIBVIRT_DOWN).unwrap();
        let gz = dir.path().join("nova-compute.log.2.gz");
        let mut encoder =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        encoder.write_all(LIBVIRT_DOWN.as_bytes()).unwrap();
        encoder.finish().unwrap();

        let outcome = classify_files(&request(vec![plain, gz], dir.path()));
        assert!(outcome.all_read(), "{outcome:?}");
        for file in &outcome.files {
            let diagnosis = file.diagnosis.as_ref().unwrap();
            assert_eq!(
                diagnosis.fault_kind.map(|k| k.as_str()),
                Some("hypervisor_connection"),
                "{}",
                file.file
            );
            assert!(!diagnosis.restart.restart_helps);
        }
        let json = serde_json::to_value(&outcome).unwrap();
        assert_eq!(
            json["files"][1]["diagnosis"]["fault_kind"],
            "hypervisor_connection"
        );
    }

    #[test]
    fn unreadable_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.log");
        let outcome = classify_files(&request(vec![missing.clone()], dir.path()));
        assert!(!outcome.all_read());
        let error = outcome.files[0].error.as_deref().unwrap();
        assert!(error.contains(&missing.display().to_string()), "{error}");
        assert!(render(&outcome).contains("error: cannot read"));
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("nova-compute.log.1.gz");
        std::fs::write(&gz, b"not gzip at all").unwrap();
        let outcome = classify_files(&request(vec![gz], dir.path()));
        let error = outcome.files[0].error.as_deref().unwrap();
        assert!(error.contains("invalid gzip data"), "{error}");
    }

    #[test]
    fn utc_offsets_parse() {
        assert_eq!(parse_utc_offset("+02:00").unwrap().whole_hours(), 2);
        assert_eq!(parse_utc_offset("-05:30").unwrap().whole_minutes(), -330);
        assert_eq!(parse_utc_offset("Z").unwrap(), UtcOffset::UTC);
        let err = parse_utc_offset("2").unwrap_err();
        assert!(err.contains("+HH:MM"), "{err}");
    }
}
