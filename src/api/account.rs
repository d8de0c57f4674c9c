//! The Account kind: a NATS connection profile (servers, credentials, TLS) that Streams,
//! Consumers, KeyValues and ObjectStores use through `spec.account`. Field for field as
//! NACK's, plus `jsDomain`, `jsApiPrefix` and `allowedNamespaces` (use from other
//! namespaces). It does not create NATS accounts.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::{self, Condition};

/// Connection settings for NATS, used by objects that name this Account in `spec.account`
/// (`<name>` in the same namespace, or `<namespace>/<name>` from a namespace listed in
/// `allowedNamespaces`). Credentials come from Secrets in the Account's namespace, or from
/// files mounted into the operator.
// printcolumn(...) repeats keys such as `type_`, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "jetstream.nats.io",
    version = "v1beta2",
    kind = "Account",
    plural = "accounts",
    singular = "account",
    namespaced,
    status = "AccountStatus",
    category = "nats",
    category = "jetstream",
    doc = "A NATS connection profile (servers, credentials, TLS) used by JetStream objects.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the servers accept these settings"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the account is or is not ready"
    ),
    printcolumn(
        name = "Servers",
        type_ = "string",
        json_path = ".spec.servers",
        description = "NATS servers"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AccountSpec {
    /// Informational name of the NATS account these settings log in to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[^.*>]*$"))]
    pub name: Option<String>,

    /// NATS server URLs (for example `nats://nats.nats:4222`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,

    /// TLS: CA, client certificate and key, from a Secret (keys) or files (paths).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<AccountTls>,

    /// Credentials (`.creds`: JWT and NKey seed), from a Secret key or a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creds: Option<AccountCreds>,

    /// NKey seed, from a Secret key or a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nkey: Option<AccountNkey>,

    /// Token, from a Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<AccountToken>,

    /// User and password, from Secret keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<AccountUser>,

    /// Start TLS before the NATS handshake (the server must enable `handshake_first`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_first: bool,

    /// JetStream domain of the assets that use this Account (API at `$JS.<domain>.API`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub js_domain: Option<String>,

    /// JetStream API prefix, for JetStream imported from another account (for example
    /// `$JS.other.API`). Wins over `jsDomain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub js_api_prefix: Option<String>,

    /// Other namespaces whose objects may use this Account (as `<namespace>/<name>`);
    /// `*` allows every namespace. Objects in the Account's own namespace always may.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_namespaces: Vec<String>,
}

/// A reference to a Secret in the Account's namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// TLS settings of an Account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountTls {
    /// Secret holding the keys below. Without it, `ca`, `cert` and `key` are file paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    /// CA certificate that verifies the servers (Secret key, or file path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Client certificate for mutual TLS (Secret key, or file path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// Client key for mutual TLS (Secret key, or file path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Credentials of an Account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountCreds {
    /// Secret holding the credentials. Without it, `file` is a file path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    /// Key in the Secret (or file path) of the `.creds` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// NKey of an Account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountNkey {
    /// Secret holding the seed. Without it, `seed` is a file path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    /// Key in the Secret (or file path) of the NKey seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
}

/// Token of an Account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountToken {
    /// Secret holding the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    /// Key in the Secret of the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// User and password of an Account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountUser {
    /// Secret holding the user and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    /// Key in the Secret of the user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Key in the Secret of the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// Status of an Account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountStatus {
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Standard conditions: `Ready` (the servers accept these settings), `Reconciling`,
    /// `Stalled`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "super::common::lenient_conditions"
    )]
    #[schemars(schema_with = "super::common::conditions_schema")]
    pub conditions: Vec<Condition>,

    /// A fingerprint of the resolved settings (including the Secrets' versions, never
    /// their contents); it changes when credentials rotate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings_hash: Option<String>,

    /// Objects that still use this Account (set while its deletion waits for them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependents: Vec<String>,
}

impl AccountStatus {
    /// True when Ready.
    pub fn is_ready(&self) -> bool {
        conditions::is_ready(&self.conditions)
    }
}

impl AccountSpec {
    /// True when objects in `namespace` may use an Account that lives in `home`.
    pub fn allows(&self, home: &str, namespace: &str) -> bool {
        home == namespace
            || self
                .allowed_namespaces
                .iter()
                .any(|n| n == "*" || n == namespace)
    }
}

/// Splits `spec.account` into (namespace, name): `name` means the object's namespace.
pub fn account_ref<'a>(reference: &'a str, object_namespace: &'a str) -> (&'a str, &'a str) {
    match reference.split_once('/') {
        Some((ns, name)) if !ns.is_empty() => (ns, name),
        _ => (object_namespace, reference),
    }
}

impl super::ApiKind for Account {
    const KIND: &'static str = "Account";
    const FINALIZER: &'static str = "account.nats.io/finalizer";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_permissions() {
        assert_eq!(account_ref("shared", "team-a"), ("team-a", "shared"));
        assert_eq!(
            account_ref("platform/shared", "team-a"),
            ("platform", "shared")
        );
        let mut spec = AccountSpec::default();
        assert!(spec.allows("platform", "platform"));
        assert!(!spec.allows("platform", "team-a"));
        spec.allowed_namespaces = vec!["team-a".into()];
        assert!(spec.allows("platform", "team-a"));
        assert!(!spec.allows("platform", "team-b"));
        spec.allowed_namespaces = vec!["*".into()];
        assert!(spec.allows("platform", "team-b"));
    }

    #[test]
    fn nack_account_manifest_parses() {
        let a: AccountSpec = serde_saphyr::from_str(
            "name: a\nservers: [nats://nats:4222]\ntls:\n  secret:\n    name: tls\n  ca: ca.crt\n  cert: tls.crt\n  key: tls.key\ncreds:\n  secret:\n    name: creds\n  file: user.creds\n",
        )
        .unwrap();
        assert_eq!(a.tls.unwrap().secret.unwrap().name, "tls");
        assert_eq!(a.creds.unwrap().file.as_deref(), Some("user.creds"));
    }
}
