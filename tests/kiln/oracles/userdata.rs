//! What the oracles read from a rendered user-data: the YAML, write_files decoded as cloud-init decodes
//! them (cloudinit/config/cc_write_files.py, 22.4.2), the provisioning script and its lines.

use std::io::Read;

use base64::Engine as _;
use serde_json::Value;

/// cc_write_files.DEFAULT_PERMS and DEFAULT_OWNER.
const DEFAULT_PERMS: u32 = 0o644;
const DEFAULT_OWNER: &str = "root:root";

pub struct UserData {
    pub text: String,
    pub config: Value,
    pub files: Vec<File>,
}

/// One write_files entry, decoded.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct File {
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
    pub owner: String,
    /// Written by write-files-deferred (final stage, after users and packages).
    pub defer: bool,
    pub append: bool,
}

pub fn parse(text: &str) -> Result<UserData, String> {
    let config: Value = serde_saphyr::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    if !config.is_object() {
        return Err("not a mapping".into());
    }
    let mut files = Vec::new();
    for entry in config.get("write_files").and_then(Value::as_array).into_iter().flatten() {
        files.push(file(entry)?);
    }
    Ok(UserData { text: text.to_string(), config, files })
}

fn file(entry: &Value) -> Result<File, String> {
    let path = entry["path"].as_str().ok_or_else(|| format!("write_files entry without a path: {entry}"))?;
    let raw = match &entry["content"] {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => return Err(format!("{path}: content is not text: {other}")),
    };
    let content =
        decode(entry["encoding"].as_str().unwrap_or("text/plain"), &raw).map_err(|e| format!("{path}: {e}"))?;
    // decode_perms: numbers are taken as they are, text as octal.
    let mode = match &entry["permissions"] {
        Value::Null => DEFAULT_PERMS,
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or("permissions out of range")?,
        Value::String(s) => {
            u32::from_str_radix(s, 8).map_err(|_| format!("{path}: permissions {s:?} are not octal"))?
        }
        other => return Err(format!("{path}: permissions {other}")),
    };
    Ok(File {
        path: path.to_string(),
        content,
        mode,
        owner: entry["owner"].as_str().unwrap_or(DEFAULT_OWNER).to_string(),
        defer: entry["defer"].as_bool().unwrap_or(false),
        append: entry["append"].as_bool().unwrap_or(false),
    })
}

/// cc_write_files.canonicalize_extraction and extract_contents.
fn decode(encoding: &str, raw: &str) -> Result<Vec<u8>, String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s.trim()).map_err(|e| format!("base64: {e}"));
    let gunzip = |bytes: Vec<u8>| {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice()).read_to_end(&mut out).map_err(|e| format!("gzip: {e}"))?;
        Ok::<_, String>(out)
    };
    match encoding.to_ascii_lowercase().as_str() {
        "gz" | "gzip" => gunzip(raw.as_bytes().to_vec()),
        "gz+base64" | "gzip+base64" | "gz+b64" | "gzip+b64" => gunzip(b64(raw)?),
        "b64" | "base64" => b64(raw),
        "text/plain" => Ok(raw.as_bytes().to_vec()),
        other => Err(format!("unknown encoding {other:?}")),
    }
}

/// cc_ssh.GENERATE_KEY_NAMES: what cloud-init generates when ssh_genkeytypes is not set.
const DEFAULT_SSH_KEY_TYPES: &[&str] = &["rsa", "dsa", "ecdsa", "ed25519"];

impl UserData {
    /// The SSH host key types cloud-init generates for this user-data (`ssh_genkeytypes`, or its default).
    pub fn ssh_key_types(&self) -> Vec<String> {
        match self.config.get("ssh_genkeytypes").and_then(serde_json::Value::as_array) {
            Some(types) => types.iter().filter_map(serde_json::Value::as_str).map(str::to_string).collect(),
            None => DEFAULT_SSH_KEY_TYPES.iter().map(|t| t.to_string()).collect(),
        }
    }

    /// The files whose path starts with one of `prefixes` (a prefix ending in `/` is a directory).
    pub fn files_under<'a>(&'a self, prefixes: &'a [&str]) -> impl Iterator<Item = &'a File> {
        self.files.iter().filter(move |f| prefixes.iter().any(|p| f.path.starts_with(p)))
    }

    pub fn file(&self, path: &str) -> Option<&File> {
        self.files.iter().rev().find(|f| f.path == path)
    }

    /// The provisioning script kiln runs as the only runcmd entry.
    pub fn script(&self) -> Option<String> {
        self.files
            .iter()
            .find(|f| f.path.starts_with(kiln::lower::PROVISION_PATH))
            .map(|f| String::from_utf8_lossy(&f.content).into_owned())
    }

    /// The script's lines whose first word is `command`, in order.
    pub fn script_lines(&self, command: &str) -> Vec<String> {
        let script = self.script().unwrap_or_default();
        script
            .lines()
            .filter(|line| {
                let mut words = line.split_whitespace();
                words.next() == Some(command)
            })
            .map(str::to_string)
            .collect()
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.config.get(key).and_then(Value::as_str)
    }

    /// The packages module's list, names only (`name=version` and `[name, version]` cut).
    pub fn packages(&self) -> Vec<String> {
        let entries = self.config.get("packages").and_then(Value::as_array).into_iter().flatten();
        entries
            .filter_map(|p| p.as_str().or_else(|| p.get(0).and_then(Value::as_str)))
            .map(|p| p.split('=').next().unwrap_or(p).to_string())
            .collect()
    }
}
