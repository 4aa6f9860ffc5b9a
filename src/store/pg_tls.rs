//! Where a PostgreSQL writer connects, and with what TLS: the `database_url`'s `sslmode`
//! and `sslrootcert` read as libpq reads them, and as sqlx reads them for weft's pools, so
//! the writers' connections and the pools' are protected alike.
//!
//! | `sslmode` | TLS | server certificate checked |
//! |---|---|---|
//! | `disable` | never | – |
//! | `allow`, `prefer` (default) | if the server offers it | no |
//! | `require` | always | no |
//! | `verify-ca` | always | chain, against `sslrootcert` (else the Mozilla roots) |
//! | `verify-full` | always | chain and host name |
//!
//! tokio-postgres itself knows only `disable`, `prefer` and `require`, and refuses options
//! it does not know; the two `verify-` modes become `require` with a verifying TLS
//! configuration, and `sslrootcert` is read here. `allow` (plain first, TLS if refused) is
//! taken as `prefer`. As with libpq, a Unix socket never carries TLS. Client certificates
//! (`sslcert`, `sslkey`) are refused at start-up: the writers cannot present one yet.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::str::FromStr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::config::Host;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Why a PostgreSQL URL cannot be used by the writers.
#[derive(Debug, thiserror::Error)]
pub enum PgUrlError {
    #[error("not a URL: {0}")]
    Url(#[from] url::ParseError),
    #[error("sslmode={0} is not one of disable, allow, prefer, require, verify-ca, verify-full")]
    SslMode(String),
    #[error("sslrootcert {path}: {reason}")]
    RootCert { path: String, reason: String },
    #[error("{0} (a client certificate) is not supported for PostgreSQL yet")]
    ClientCert(String),
    #[error("TLS set-up: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{0}")]
    Postgres(#[from] tokio_postgres::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode, PgUrlError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(PgUrlError::SslMode(other.to_string())),
        })
    }

    /// The mode as tokio-postgres knows it.
    fn negotiation(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
        }
    }
}

/// A writer connection's settings and TLS connector, made once at start-up.
#[derive(Clone)]
pub struct PgTarget {
    pub config: tokio_postgres::Config,
    pub tls: Tls,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PgTarget {
    pub fn from_url(url: &str) -> Result<PgTarget, PgUrlError> {
        let mut parsed = url::Url::parse(url)?;
        let mut mode = SslMode::Prefer;
        let mut root_cert = None;
        let mut kept = Vec::new();
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "sslmode" => mode = SslMode::parse(&v)?,
                "sslrootcert" => root_cert = Some(v.into_owned()),
                "sslcert" | "sslkey" => return Err(PgUrlError::ClientCert(k.into_owned())),
                // sqlx's own option; the writers keep their statements themselves.
                "statement-cache-capacity" => {}
                _ => kept.push((k.into_owned(), v.into_owned())),
            }
        }
        kept.push(("sslmode".into(), mode.negotiation().into()));
        parsed.query_pairs_mut().clear().extend_pairs(kept);
        // Written back form-encoded, a space is `+`, which tokio-postgres reads as a plus
        // (`options=-c%20work_mem%3D5MB` would become `-c+work_mem=5MB`); a plus of the
        // original is `%2B` by now.
        let query = parsed.query().map(|q| q.replace('+', "%20"));
        parsed.set_query(query.as_deref());
        let mut config = tokio_postgres::Config::from_str(parsed.as_str())?;
        if config
            .get_hosts()
            .iter()
            .all(|h| matches!(h, Host::Unix(_)))
        {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        let tls = Tls(MakeRustlsConnect::new(client_config(
            mode,
            root_cert.as_deref(),
        )?));
        Ok(PgTarget { config, tls })
    }
}

/// rustls for tokio-postgres. tokio-postgres asks for a connector before it knows whether
/// TLS will be used, with an empty host name for a Unix socket, which rustls refuses; such
/// a connection never uses TLS (see [`PgTarget::from_url`]), so any name does.
#[derive(Clone)]
pub struct Tls(MakeRustlsConnect);

impl<S> MakeTlsConnect<S> for Tls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, hostname: &str) -> Result<Self::TlsConnect, Self::Error> {
        let name = if hostname.is_empty() {
            "localhost"
        } else {
            hostname
        };
        MakeTlsConnect::<S>::make_tls_connect(&mut self.0, name)
    }
}

fn client_config(
    mode: SslMode,
    root_cert: Option<&str>,
) -> Result<rustls::ClientConfig, PgUrlError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => Arc::new(Lenient {
            chain: None,
            provider,
        }),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let chain = WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots(root_cert)?),
                provider.clone(),
            )
            .build()
            .map_err(|e| PgUrlError::Tls(rustls::Error::General(e.to_string())))?;
            if mode == SslMode::VerifyCa {
                Arc::new(Lenient {
                    chain: Some(chain),
                    provider,
                })
            } else {
                chain
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The certificates in `sslrootcert`, or the Mozilla roots without one.
fn roots(root_cert: Option<&str>) -> Result<RootCertStore, PgUrlError> {
    let mut store = RootCertStore::empty();
    let Some(path) = root_cert else {
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(store);
    };
    let err = |reason: String| PgUrlError::RootCert {
        path: path.to_string(),
        reason,
    };
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))? {
        store
            .add(cert.map_err(|e| err(e.to_string()))?)
            .map_err(|e| err(e.to_string()))?;
    }
    if store.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    Ok(store)
}

/// `prefer` and `require` (no `chain`): encrypted, but any certificate is taken (libpq's
/// and sqlx's meaning). `verify-ca`: the chain must lead to a trusted root; the name in it
/// is not compared. Either way the handshake's signatures are checked against the
/// certificate.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::config::SslMode as Negotiated;

    fn mode_of(url: &str) -> Negotiated {
        PgTarget::from_url(url)
            .expect("usable URL")
            .config
            .get_ssl_mode()
    }

    #[test]
    fn sslmode_is_read_as_libpq_reads_it() {
        let base = "postgres://postgres@127.0.0.1:5432/test";
        assert_eq!(mode_of(base), Negotiated::Prefer, "libpq's default");
        for (mode, want) in [
            ("disable", Negotiated::Disable),
            ("allow", Negotiated::Prefer),
            ("prefer", Negotiated::Prefer),
            ("require", Negotiated::Require),
            ("verify-ca", Negotiated::Require),
            ("verify-full", Negotiated::Require),
        ] {
            assert_eq!(mode_of(&format!("{base}?sslmode={mode}")), want, "{mode}");
        }
        let kept = PgTarget::from_url(&format!(
            "{base}?application_name=weft-w&sslmode=require&statement-cache-capacity=10"
        ))
        .expect("URL with other options");
        assert_eq!(kept.config.get_application_name(), Some("weft-w"));
        assert_eq!(kept.config.get_dbname(), Some("test"));
    }

    #[test]
    fn unusable_tls_settings_are_refused_with_their_reason() {
        let base = "postgres://postgres@127.0.0.1:5432/test";
        let err = |q: &str| {
            PgTarget::from_url(&format!("{base}?{q}"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err("sslmode=on").contains("sslmode=on is not one of"));
        assert!(err("sslcert=/c.pem").contains("sslcert (a client certificate)"));
        assert!(err("sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .contains("sslrootcert /nonexistent/ca.pem"));
        let dir = tempfile::tempdir().expect("temp dir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        assert!(err(&format!(
            "sslmode=verify-ca&sslrootcert={}",
            empty.display()
        ))
        .contains("no certificate in the file"));
    }

    /// Whether the writer connection made for `url` is encrypted (`pg_stat_ssl`), or the
    /// connection error.
    async fn writer_tls(url: &str) -> Result<bool, String> {
        let target = PgTarget::from_url(url).map_err(|e| e.to_string())?;
        let conn = super::super::pg::PgConn::connect(&target)
            .await
            .map_err(|e| e.to_string())?;
        conn.scalar_bool("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .await
            .map_err(|e| e.to_string())
    }

    fn with_query(host: &str, q: &str) -> String {
        let mut u = url::Url::parse(&super::super::pg::test_url()).expect("test URL");
        u.set_host(Some(host)).expect("host");
        u.set_query(Some(q));
        u.to_string()
    }

    /// Against the local server, which has TLS on with a self-signed certificate for
    /// `localhost` (Debian's default): every mode does what the table in the module's
    /// documentation says, for the writers' connections and for sqlx's pools alike.
    #[tokio::test]
    async fn writers_and_pools_connect_as_sslmode_says() {
        let admin = super::super::pg::connect_url(&super::super::pg::test_url()).await;
        let cert = admin
            .scalar_text("SELECT setting FROM pg_settings WHERE name = 'ssl_cert_file'")
            .await
            .expect("ssl_cert_file");
        assert!(
            admin
                .scalar_bool("SELECT setting = 'on' FROM pg_settings WHERE name = 'ssl'")
                .await
                .expect("ssl"),
            "these tests need the local PostgreSQL to have TLS on (ssl = on)"
        );
        let ip = "127.0.0.1";
        assert_eq!(
            writer_tls(&with_query(ip, "sslmode=disable")).await,
            Ok(false)
        );
        assert_eq!(
            writer_tls(&with_query(ip, "sslmode=prefer")).await,
            Ok(true)
        );
        assert_eq!(
            writer_tls(&with_query(ip, "sslmode=require")).await,
            Ok(true)
        );
        // The server's certificate is its own root: the chain checks out, but it names
        // `localhost`, not 127.0.0.1.
        let ca = format!("sslrootcert={cert}");
        assert_eq!(
            writer_tls(&with_query(ip, &format!("sslmode=verify-ca&{ca}"))).await,
            Ok(true)
        );
        let wrong_name = writer_tls(&with_query(ip, &format!("sslmode=verify-full&{ca}"))).await;
        assert!(
            wrong_name.is_err(),
            "verify-full to an address the certificate does not name: {wrong_name:?}"
        );
        assert_eq!(
            writer_tls(&with_query(
                "localhost",
                &format!("sslmode=verify-full&{ca}")
            ))
            .await,
            Ok(true)
        );
        // A Unix socket (libpq's spelling: the socket directory as the host): no TLS.
        let dirs = admin
            .scalar_text("SELECT setting FROM pg_settings WHERE name = 'unix_socket_directories'")
            .await
            .expect("unix_socket_directories");
        let dir = dirs.split(',').next().unwrap_or_default().trim();
        assert!(
            !dir.is_empty(),
            "the local PostgreSQL listens on no Unix socket"
        );
        let socket: String = url::form_urlencoded::byte_serialize(dir.as_bytes()).collect();
        let base = url::Url::parse(&super::super::pg::test_url()).expect("test URL");
        let socket = format!("postgres://{}@{socket}{}", base.username(), base.path());
        assert_eq!(writer_tls(&socket).await, Ok(false), "{socket}");
        // Not signed by a root it is given (the Mozilla roots): refused.
        for mode in ["verify-ca", "verify-full"] {
            let untrusted = writer_tls(&with_query("localhost", &format!("sslmode={mode}"))).await;
            assert!(
                untrusted.is_err(),
                "{mode}: a self-signed certificate without sslrootcert: {untrusted:?}"
            );
        }

        sqlx::any::install_default_drivers();
        for (q, want) in [("sslmode=disable", false), ("sslmode=require", true)] {
            let pool = sqlx::AnyPool::connect(&with_query(ip, q))
                .await
                .expect("pool");
            let (ssl,): (bool,) =
                sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                    .fetch_one(&pool)
                    .await
                    .expect("pg_stat_ssl");
            assert_eq!(ssl, want, "pool with {q}");
            pool.close().await;
        }
    }
}
