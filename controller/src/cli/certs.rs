//! `novamedic certs`: a small CA for one deployment, built on
//! [`novamedic_tls::issue`].

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use novamedic_tls::issue;
use novamedic_tls::CertKind;

use super::{exit, Failure};

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a CA: ca.crt, ca.key (mode 0600) and an empty ca.crl in DIR.
    InitCa {
        /// Directory of the CA; created when missing.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Common Name of the CA certificate.
        #[arg(long, default_value = "novamedic CA")]
        name: String,
    },
    /// Issue a certificate signed by the CA in DIR, written as
    /// DIR/KIND-NAME.crt and DIR/KIND-NAME.key (mode 0600).
    Issue(IssueArgs),
    /// Add a certificate to the CA's revocation list, DIR/ca.crl. Send SIGHUP
    /// to the controller to apply it to new connections.
    Revoke {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The certificate file to revoke.
        cert: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Directory of the CA, as given to init-ca.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// What the certificate is for; written as the subject's OU.
    #[arg(long, value_enum)]
    kind: KindArg,
    /// The identity: a node's name as its agent reports it, the controller's
    /// host name, or an operator's name as listed in [roles]. Written as the
    /// subject's CN.
    #[arg(long)]
    name: String,
    /// More DNS names or IP addresses for a controller or node certificate,
    /// for example the address the agents dial.
    #[arg(long = "san", value_name = "NAME_OR_IP")]
    sans: Vec<String>,
    /// Validity in days.
    #[arg(long, default_value_t = issue::DEFAULT_VALIDITY_DAYS, value_parser = clap::value_parser!(u32).range(1..=36500))]
    days: u32,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum KindArg {
    Node,
    Controller,
    Operator,
}

impl From<KindArg> for CertKind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::Node => CertKind::Node,
            KindArg::Controller => CertKind::Controller,
            KindArg::Operator => CertKind::Operator,
        }
    }
}

/// Runs a `certs` subcommand; it prints the files it wrote.
pub fn run(command: &CertsCommand) -> Result<u8, Failure> {
    let failed = |err: issue::IssueError| Failure {
        exit_code: exit::FAILED,
        message: crate::error_chain(&err),
    };
    match command {
        CertsCommand::InitCa { dir, name } => {
            issue::init_ca(dir, name).map_err(failed)?;
            println!("{}", issue::ca_cert_path(dir).display());
            println!("{}", issue::ca_key_path(dir).display());
            println!("{}", issue::crl_path(dir).display());
        }
        CertsCommand::Issue(args) => {
            let issued = issue::issue(
                &args.dir,
                args.kind.into(),
                &args.name,
                &args.sans,
                args.days,
            )
            .map_err(failed)?;
            println!("{}", issued.cert.display());
            println!("{}", issued.key.display());
        }
        CertsCommand::Revoke { dir, cert } => {
            let serial = issue::revoke(dir, cert).map_err(failed)?;
            println!(
                "revoked serial {serial} in {}",
                issue::crl_path(dir).display()
            );
        }
    }
    Ok(0)
}
