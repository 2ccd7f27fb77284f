//! The typed subset of cloud-config that kiln emits, and `emit()`, which writes it as YAML.
//!
//! Never templated: values are serialized by serde-saphyr, which quotes anything a YAML 1.1 reader
//! (cloud-init uses PyYAML) would otherwise turn into a number, a boolean or null.

use serde::Serialize;
use serde_saphyr::LitString;

#[derive(Debug, Clone, Serialize)]
pub struct CloudConfig {
    /// Absent in the bake stage: the host name is per instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    pub manage_etc_hosts: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<Swap>,
    pub ssh_pwauth: bool,
    /// Host key types cloud-init generates on each new instance.
    pub ssh_genkeytypes: Vec<String>,
    pub disable_root: bool,
    pub users: Vec<UserEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apt: Option<AptConfig>,
    pub write_files: Vec<WriteFile>,
    pub package_update: bool,
    pub package_upgrade: bool,
    pub package_reboot_if_required: bool,
    /// Omitted when empty: both cloud-init schemas require at least one item.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    pub runcmd: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Swap {
    pub filename: String,
    pub size: u64,
    pub maxsize: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserEntry {
    pub name: String,
    pub shell: String,
    pub lock_passwd: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sudo: Option<String>,
    /// Omitted when empty (a deploy user who logs in through Tailscale SSH only): both cloud-init
    /// schemas require at least one item.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ssh_authorized_keys: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AptConfig {
    /// Keeps cloud-init from regenerating `/etc/apt/sources.list` over the sources kiln writes.
    pub preserve_sources_list: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct WriteFile {
    pub path: String,
    pub owner: String,
    /// Octal text such as `0644`; the emitter quotes it so YAML 1.1 does not read it as 420.
    pub permissions: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Written after users and packages exist (cloud-init's final stage) rather than first.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub defer: bool,
    pub content: Content,
}

/// File content: multi-line text as a `|` block (readable), anything else as a quoted scalar.
#[derive(Debug, Clone)]
pub struct Content(pub String);

impl Serialize for Content {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A block literal cannot carry trailing spaces on its last line, carriage returns or other
        // control characters faithfully: those bodies go out double-quoted with escapes instead.
        let block_safe = self.0.contains('\n')
            && !self.0.chars().any(|c| c.is_control() && c != '\n')
            && !self.0.lines().any(|l| l.ends_with(' ') || l.ends_with('\t'));
        if block_safe { LitString(self.0.clone()).serialize(serializer) } else { self.0.serialize(serializer) }
    }
}

impl WriteFile {
    pub fn new(path: impl Into<String>, mode: u32, content: impl Into<String>) -> Self {
        WriteFile {
            path: path.into(),
            owner: "root:root".into(),
            permissions: format!("{mode:04o}"),
            encoding: None,
            defer: false,
            content: Content(content.into()),
        }
    }

    /// The bytes cloud-init writes, decoded as its write_files module reads `encoding` (cc_write_files'
    /// `canonicalize_extraction`: lower-cased and trimmed; none and `text/plain` as they are, `b64` and
    /// `base64` decoded). kiln writes no compressed file, so the gzip forms are refused, not guessed at.
    pub fn bytes(&self) -> anyhow::Result<Vec<u8>> {
        use anyhow::Context as _;
        use base64::Engine as _;
        let encoding = self.encoding.as_deref().map(|e| e.trim().to_ascii_lowercase());
        match encoding.as_deref() {
            None | Some("" | "text/plain") => Ok(self.content.0.clone().into_bytes()),
            Some("b64" | "base64") => base64::engine::general_purpose::STANDARD
                .decode(&self.content.0)
                .with_context(|| format!("{}: its content is not base64", self.path)),
            Some(other) => anyhow::bail!("{}: encoding `{other}` is not one kiln writes", self.path),
        }
    }
}

/// The first line cloud-init requires, then kiln's header comments, then the YAML body.
pub fn emit(config: &CloudConfig, header: &[String]) -> Result<String, serde_saphyr::SerializeError> {
    let options = serde_saphyr::ser_options! { prefer_block_scalars: false, indent_step: 2 };
    let body = serde_saphyr::to_string_with_options(config, options)?;
    let mut out = String::with_capacity(body.len() + 256);
    out.push_str("#cloud-config\n");
    for line in header {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&body);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_files_bytes_are_decoded_as_cloud_init_decodes_them() {
        let mut file = WriteFile::new("/etc/apt/keyrings/x.gpg", 0o644, "a\u{0}text");
        assert_eq!(file.bytes().unwrap(), b"a\0text");
        file.content = Content("AAEC/w==".into());
        for encoding in ["b64", "base64", " B64 "] {
            file.encoding = Some(encoding.into());
            assert_eq!(file.bytes().unwrap(), [0, 1, 2, 255], "{encoding}");
        }
        file.encoding = Some("gz+b64".into());
        assert!(file.bytes().unwrap_err().to_string().contains("`gz+b64` is not one kiln writes"));
        file.encoding = Some("b64".into());
        file.content = Content("not base64!".into());
        assert!(file.bytes().is_err());
    }
}
