//! Credentials for tests: TLS material made with rcgen, and decentralised (JWT) auth made
//! with nats-jwt-rs.

use std::path::PathBuf;

use async_nats::ConnectOptions;

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM
/// text and as files in a directory of their own.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: String,
    pub client_cert: String,
    pub client_key: String,
}

impl Pki {
    pub fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair, KeyUsagePurpose,
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "jetstream-operator test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("self-signed CA");

        let leaf = |sans: Vec<String>, cn: &str, eku: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("leaf key");
            let mut params = CertificateParams::new(sans).expect("leaf params");
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![eku];
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            let cert = params.signed_by(&key, &*ca).expect("signed leaf");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            Vec::new(),
            "jetstream-operator",
            ExtendedKeyUsagePurpose::ClientAuth,
        );

        let dir = tempfile::Builder::new()
            .prefix("jso-pki-")
            .tempdir()
            .expect("PKI directory");
        for (file, pem) in [
            ("ca.crt", ca.pem()),
            ("server.crt", server_cert),
            ("server.key", server_key),
            ("client.crt", client_cert.clone()),
            ("client.key", client_key.clone()),
        ] {
            std::fs::write(dir.path().join(file), pem).expect("write PEM file");
        }
        Pki {
            dir,
            ca: ca.pem(),
            client_cert,
            client_key,
        }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn path(&self, name: &str) -> String {
        self.file(name).display().to_string()
    }

    /// The nats-server `tls {}` block with the server certificate, plus `extra` lines.
    pub fn server_block(&self, extra: &str) -> String {
        format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  {extra}\n}}",
            self.path("server.crt"),
            self.path("server.key"),
        )
    }

    /// A client that trusts this CA (and presents the client certificate with `mutual`).
    pub fn client(&self, mutual: bool) -> ConnectOptions {
        let opts = ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(self.file("ca.crt"));
        if mutual {
            opts.add_client_certificate(self.file("client.crt"), self.file("client.key"))
        } else {
            opts
        }
    }
}

// ---------------------------------------------------------------------------------------
// Decentralised auth (nats-jwt-rs)

/// An operator, a system account, an application account with JetStream enabled, and a
/// user of that account with its `.creds` file.
pub struct Decentralised {
    /// Lines for nats.conf: `operator`, `system_account`, `resolver: MEMORY`, and the
    /// preloaded account JWTs.
    pub server_conf: String,
    /// The user's `.creds` (JWT and seed).
    pub creds: String,
}

impl Decentralised {
    pub fn new() -> Decentralised {
        use nats_jwt_rs::account::{Account, JetStreamLimits};
        use nats_jwt_rs::operator::Operator;
        use nats_jwt_rs::user::User;
        use nkeys::KeyPair;

        let operator = KeyPair::new_operator();
        let operator_jwt = Operator::new_claims("jso-test".into(), operator.public_key())
            .encode(&operator)
            .expect("operator JWT");

        let system = KeyPair::new_account();
        let system_jwt = Account::new_claims("SYS".into(), system.public_key())
            .encode(&operator)
            .expect("system account JWT");

        let app = KeyPair::new_account();
        let mut app_claims = Account::new_claims("APP".into(), app.public_key());
        app_claims
            .nats
            .limits
            .get_or_insert_with(Default::default)
            .jetstream = Some(JetStreamLimits {
            memory_storage: Some(-1),
            disk_storage: Some(-1),
            streams: Some(-1),
            consumer: Some(-1),
            max_ack_pending: Some(-1),
            ..Default::default()
        });
        let app_jwt = app_claims.encode(&operator).expect("account JWT");

        let user = KeyPair::new_user();
        let user_jwt = User::new_claims("app-user".into(), user.public_key())
            .encode(&app)
            .expect("user JWT");
        let seed = user.seed().expect("user seed");
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n"
        );
        let server_conf = format!(
            "operator: \"{operator_jwt}\"\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {sys}: \"{system_jwt}\"\n  {app_pub}: \"{app_jwt}\"\n}}",
            sys = system.public_key(),
            app_pub = app.public_key(),
        );
        Decentralised { server_conf, creds }
    }
}
