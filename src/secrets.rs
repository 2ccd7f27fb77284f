//! Secret values: resolved from `{env}`/`{file}` references only when rendering, never printed.
//!
//! `Secret` has no `Display` and a `Debug` that hides its value, so a secret cannot reach a log or a
//! diagnostic by accident; the only way to its bytes is `expose()`, called where user-data is built.

use std::fmt;

use crate::model::{Model, SecretRef};

/// Where secret values come from (the environment and the profile's directory, in the effects layer).
pub trait SecretSource {
    fn lookup(&self, reference: &SecretRef) -> Result<String, String>;
}

#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    redacted: bool,
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.value
    }

    pub fn is_redacted(&self) -> bool {
        self.redacted
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.redacted { "Secret(redacted)" } else { "Secret(***)" })
    }
}

/// The secrets one profile needs, resolved or replaced by placeholders (`--redact`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    pub cloudflared_token: Option<Secret>,
    pub tailscale_auth_key: Option<Secret>,
    /// Only when the profile references one; a key the host generates itself never passes through kiln.
    pub wireguard_private_key: Option<Secret>,
}

impl Secrets {
    /// Human names of the secrets present, for the user-data header.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.cloudflared_token.is_some() {
            names.push("cloudflared tunnel token");
        }
        if self.tailscale_auth_key.is_some() {
            names.push("Tailscale auth key");
        }
        if self.wireguard_private_key.is_some() {
            names.push(WIREGUARD_KEY);
        }
        names
    }

    pub fn any_real(&self) -> bool {
        [&self.cloudflared_token, &self.tailscale_auth_key, &self.wireguard_private_key]
            .into_iter()
            .flatten()
            .any(|s| !s.redacted)
    }
}

const WIREGUARD_KEY: &str = "WireGuard private key";

/// A secret that could not be resolved. Names the reference, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secret {what} ({reference}): {why}")]
pub struct SecretError {
    pub what: &'static str,
    pub reference: String,
    pub why: String,
}

pub fn describe(reference: &SecretRef) -> String {
    match reference {
        SecretRef::Env(name) => format!("environment variable `{name}`"),
        SecretRef::File(path) => format!("file `{path}`"),
    }
}

/// Placeholder text written instead of a value with `--redact`.
pub fn placeholder(reference: &SecretRef) -> String {
    match reference {
        SecretRef::Env(name) => format!("KILN-REDACTED-env-{name}"),
        SecretRef::File(path) => {
            format!("KILN-REDACTED-file-{}", path.replace(|c: char| !c.is_ascii_alphanumeric(), "_"))
        }
    }
}

/// The longest each secret kind is, for measuring user-data before the secrets are known: a tunnel
/// token is base64 of `{"a":<32 hex>,"t":<36-character UUID>,"s":<44 base64>}` (180 characters; 256
/// leaves room for longer account tags), a Tailscale auth key `tskey-auth-<id>-<secret>` (about 60;
/// 100 leaves room), a WireGuard key exactly 44.
const LONGEST: [(&str, usize); 3] =
    [("cloudflared tunnel token", 256), ("Tailscale auth key", 100), (WIREGUARD_KEY, 44)];

fn longest_of(what: &str) -> usize {
    LONGEST.iter().find(|(name, _)| *name == what).map_or(256, |(_, n)| *n)
}

/// Placeholders as long as each secret the model references can be.
pub fn longest(model: &Model) -> Secrets {
    let filler = |what: &str| Secret { value: "X".repeat(longest_of(what)), redacted: true };
    Secrets {
        cloudflared_token: model.cloudflared.as_ref().map(|_| filler("cloudflared tunnel token")),
        tailscale_auth_key: model.tailscale.as_ref().map(|_| filler("Tailscale auth key")),
        wireguard_private_key: model
            .wireguard
            .as_ref()
            .and_then(|w| w.private_key.as_ref())
            .map(|_| filler(WIREGUARD_KEY)),
    }
}

/// "a cloudflared tunnel token of 256 characters, …" for the secrets `longest` fills in.
pub fn longest_description(model: &Model) -> String {
    longest(model)
        .names()
        .iter()
        .map(|name| format!("a {name} of {} characters", longest_of(name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Placeholders for every secret the model references: enough to render every stage's shape, and
/// exactly the bake stage, which reads no secret.
pub fn placeholders(model: &Model) -> Secrets {
    // Resolving without a source never fails: every reference gets its placeholder.
    resolve(model, None).unwrap_or_default()
}

/// Resolves every secret the model references; with `source: None` renders placeholders instead.
/// Reports every missing secret at once.
pub fn resolve(model: &Model, source: Option<&dyn SecretSource>) -> Result<Secrets, Vec<SecretError>> {
    let mut errors = Vec::new();
    let mut one = |what: &'static str, reference: &SecretRef| -> Option<Secret> {
        let Some(source) = source else {
            return Some(Secret { value: placeholder(reference), redacted: true });
        };
        let fail = |why: &str| SecretError { what, reference: describe(reference), why: why.to_string() };
        match source.lookup(reference) {
            Err(why) => {
                errors.push(fail(&why));
                None
            }
            Ok(raw) => {
                // Files usually end with a newline; the value is the one line before it.
                let value = raw.strip_suffix('\n').map(|v| v.strip_suffix('\r').unwrap_or(v)).unwrap_or(&raw);
                if value.trim().is_empty() {
                    errors.push(fail("it is empty"));
                    None
                } else if value.chars().any(char::is_control) {
                    errors.push(fail("it contains line breaks or control characters; a token is one line"));
                    None
                } else {
                    Some(Secret { value: value.to_string(), redacted: false })
                }
            }
        }
    };
    let secrets = Secrets {
        cloudflared_token: model.cloudflared.as_ref().and_then(|c| one("cloudflared tunnel token", &c.token)),
        tailscale_auth_key: model.tailscale.as_ref().and_then(|t| one("Tailscale auth key", &t.auth_key)),
        wireguard_private_key: model
            .wireguard
            .as_ref()
            .and_then(|w| w.private_key.as_ref())
            .and_then(|reference| one(WIREGUARD_KEY, reference)),
    };
    // wg would refuse a malformed key only at first boot, on the host; say so now, without the value.
    if let (Some(key), Some(reference)) =
        (&secrets.wireguard_private_key, model.wireguard.as_ref().and_then(|w| w.private_key.as_ref()))
        && !key.redacted
        && !crate::model::is_wireguard_key(&key.value)
    {
        errors.push(SecretError {
            what: WIREGUARD_KEY,
            reference: describe(reference),
            why: "it is not a WireGuard key (44 characters of base64 encoding 32 bytes, as `wg genkey` prints)".into(),
        });
    }
    if errors.is_empty() { Ok(secrets) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret { value: "tskey-auth-abc".into(), redacted: false };
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert!(!format!("{:?}", Secrets { tailscale_auth_key: Some(secret), ..Default::default() }).contains("tskey"));
    }

    #[test]
    fn placeholders_name_the_reference() {
        assert_eq!(placeholder(&SecretRef::Env("TS_KEY".into())), "KILN-REDACTED-env-TS_KEY");
        assert_eq!(placeholder(&SecretRef::File("secrets/cf.token".into())), "KILN-REDACTED-file-secrets_cf_token");
    }
}
