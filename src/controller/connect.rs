//! Resolving an object's connection: the global default, then the object's own fields
//! (NACK's precedence: global < Account < object).

use std::path::PathBuf;

use crate::api::common::CommonSpec;
use crate::jetstream::api::{DEFAULT_PREFIX, domain_prefix};
use crate::jetstream::connection::{Auth, Pem, Settings, Tls};

use super::DefaultConnection;

/// A resolved connection for one object.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Connection settings.
    pub settings: Settings,
    /// JetStream API prefix.
    pub prefix: String,
    /// The Account used, if any.
    pub account: Option<String>,
}

/// Why a connection cannot be resolved (the object is Stalled until it changes).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Unresolved(pub String);

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn file(path: &str) -> Pem {
    Pem::File(PathBuf::from(path.trim()))
}

fn read(path: &str, what: &str) -> Result<String, Unresolved> {
    std::fs::read_to_string(path)
        .map_err(|e| Unresolved(format!("cannot read {what} file {path}: {e}")))
}

/// One layer of connection settings before merging.
#[derive(Default, Debug, Clone)]
pub struct Layer {
    /// Servers (replace when non-empty).
    pub servers: Vec<String>,
    /// Auth (replaces wholesale when set).
    pub auth: Option<Auth>,
    /// CA certificates (replace when non-empty).
    pub ca: Vec<Pem>,
    /// Client cert and key (replace when both set).
    pub client: Option<(Pem, Pem)>,
    /// TLS first (can only turn it on).
    pub tls_first: bool,
    /// JetStream domain.
    pub js_domain: Option<String>,
    /// API prefix.
    pub api_prefix: Option<String>,
}

impl Layer {
    /// The operator's default connection as a layer.
    pub fn from_default(d: &DefaultConnection) -> Result<Layer, Unresolved> {
        let auth = if let Some(c) = nonempty(&d.creds) {
            Some(Auth::Creds(read(c, "credentials")?))
        } else if let Some(n) = nonempty(&d.nkey) {
            Some(Auth::Nkey(read(n, "nkey seed")?.trim().to_string()))
        } else if let Some(f) = nonempty(&d.token_file) {
            Some(Auth::Token(read(f, "token")?.trim().to_string()))
        } else if let Some(t) = nonempty(&d.token) {
            Some(Auth::Token(t.to_string()))
        } else if let Some(u) = nonempty(&d.user) {
            let password = match nonempty(&d.password_file) {
                Some(f) => read(f, "password")?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
                None => d.password.clone().unwrap_or_default(),
            };
            Some(Auth::UserPassword(u.to_string(), password))
        } else {
            None
        };
        Ok(Layer {
            servers: d
                .servers
                .iter()
                .filter(|s| !s.trim().is_empty())
                .cloned()
                .collect(),
            auth,
            ca: nonempty(&d.tls_ca)
                .map(|s| vec![file(s)])
                .unwrap_or_default(),
            client: match (nonempty(&d.tls_cert), nonempty(&d.tls_key)) {
                (Some(c), Some(k)) => Some((file(c), file(k))),
                _ => None,
            },
            tls_first: d.tls_first,
            js_domain: nonempty(&d.js_domain).map(str::to_string),
            api_prefix: nonempty(&d.api_prefix).map(str::to_string),
        })
    }

    /// An object's own connection fields as a layer.
    pub fn from_object(c: &CommonSpec) -> Result<Layer, Unresolved> {
        let auth = if let Some(p) = nonempty(&c.creds) {
            Some(Auth::Creds(read(p, "credentials")?))
        } else if let Some(p) = nonempty(&c.nkey) {
            Some(Auth::Nkey(read(p, "nkey seed")?.trim().to_string()))
        } else {
            None
        };
        let (ca, client) = match &c.tls {
            None => (Vec::new(), None),
            Some(t) => (
                t.root_cas
                    .iter()
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| file(s))
                    .collect(),
                match (nonempty(&t.client_cert), nonempty(&t.client_key)) {
                    (Some(c), Some(k)) => Some((file(c), file(k))),
                    _ => None,
                },
            ),
        };
        Ok(Layer {
            servers: c
                .servers
                .iter()
                .filter(|s| !s.trim().is_empty())
                .cloned()
                .collect(),
            auth,
            ca,
            client,
            tls_first: c.tls_first,
            js_domain: nonempty(&c.js_domain).map(str::to_string),
            api_prefix: None,
        })
    }
}

/// Merges layers, lowest precedence first.
pub fn merge(layers: &[Layer], account: Option<String>) -> Result<Resolved, Unresolved> {
    let mut servers: Vec<String> = Vec::new();
    let mut auth = Auth::None;
    let mut ca: Vec<Pem> = Vec::new();
    let mut client: Option<(Pem, Pem)> = None;
    let mut tls_first = false;
    let mut js_domain: Option<String> = None;
    let mut api_prefix: Option<String> = None;
    for l in layers {
        if !l.servers.is_empty() {
            servers = l.servers.clone();
        }
        if let Some(a) = &l.auth {
            auth = a.clone();
        }
        if !l.ca.is_empty() {
            ca = l.ca.clone();
        }
        if l.client.is_some() {
            client = l.client.clone();
        }
        tls_first |= l.tls_first;
        if l.js_domain.is_some() {
            js_domain = l.js_domain.clone();
            api_prefix = None;
        }
        if l.api_prefix.is_some() {
            api_prefix = l.api_prefix.clone();
        }
    }
    if servers.is_empty() {
        return Err(Unresolved(
            "no NATS servers: set --servers on the operator, servers on the Account, or spec.servers".into(),
        ));
    }
    let tls = Tls {
        ca,
        client,
        fingerprint: 0,
    }
    .fingerprinted()
    .map_err(Unresolved)?;
    let prefix = match (api_prefix, js_domain) {
        (Some(p), _) => p,
        (None, Some(d)) => domain_prefix(&d),
        (None, None) => DEFAULT_PREFIX.to_string(),
    };
    Ok(Resolved {
        settings: Settings {
            servers,
            auth,
            tls,
            tls_first,
        },
        prefix,
        account,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::DefaultConnection;

    #[test]
    fn object_fields_override_the_default() {
        let global = Layer {
            servers: vec!["nats://global:4222".into()],
            auth: Some(Auth::Token("t".into())),
            ..Default::default()
        };
        let obj = Layer {
            servers: vec!["nats://mine:4222".into()],
            js_domain: Some("hub".into()),
            ..Default::default()
        };
        let r = merge(&[global.clone(), obj], None).unwrap();
        assert_eq!(r.settings.servers, vec!["nats://mine:4222"]);
        assert_eq!(r.settings.auth, Auth::Token("t".into()));
        assert_eq!(r.prefix, "$JS.hub.API");
        let r = merge(&[global], None).unwrap();
        assert_eq!(r.prefix, "$JS.API");
    }

    #[test]
    fn token_and_password_files() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("token");
        std::fs::write(&t, "s3cret\n").unwrap();
        let d = DefaultConnection {
            servers: vec!["nats://x:4222".into()],
            token: Some("ignored".into()),
            token_file: Some(t.display().to_string()),
            ..Default::default()
        };
        assert_eq!(
            Layer::from_default(&d).unwrap().auth,
            Some(Auth::Token("s3cret".into()))
        );
        let p = dir.path().join("password");
        std::fs::write(&p, "pw\n").unwrap();
        let d = DefaultConnection {
            servers: vec!["nats://x:4222".into()],
            user: Some("app".into()),
            password_file: Some(p.display().to_string()),
            ..Default::default()
        };
        assert_eq!(
            Layer::from_default(&d).unwrap().auth,
            Some(Auth::UserPassword("app".into(), "pw".into()))
        );
        let missing = DefaultConnection {
            token_file: Some("/nonexistent/token".into()),
            ..Default::default()
        };
        assert!(Layer::from_default(&missing).is_err());
    }

    #[test]
    fn no_servers_is_unresolved() {
        assert!(merge(&[Layer::default()], None).is_err());
    }

    #[test]
    fn missing_creds_file_is_unresolved() {
        let c = CommonSpec {
            creds: Some("/nonexistent/x.creds".into()),
            ..Default::default()
        };
        let e = Layer::from_object(&c).unwrap_err();
        assert!(e.0.contains("/nonexistent/x.creds"));
    }
}
