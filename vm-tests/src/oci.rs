//! OCI image layouts built by the harness without Docker or the internet, for the Kamal-shaped deploy:
//! one layer (a directory tree tarred by GNU tar, gzipped), a config naming the command, a manifest and
//! an `index.json` tagging it, as the OCI image-layout specification lays them out. skopeo reads them as
//! `oci:DIR:TAG`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use kiln::effects::fs::write_atomic;
use kiln::encoding::{gzip, sha256_hex};
use serde_json::json;

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A file of the image's single layer.
pub struct File {
    /// Absolute path inside the image.
    pub path: &'static str,
    pub bytes: Vec<u8>,
    pub mode: u32,
}

/// An image: its files and the command its containers run.
pub struct ImageSpec {
    pub files: Vec<File>,
    pub cmd: Vec<String>,
}

/// Writes `spec` as an OCI image layout in `dir` (made afresh), tagged `tag`. Returns `dir`.
pub fn write_layout(dir: &Path, tag: &str, spec: &ImageSpec) -> Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
    let tar = layer_tar(spec)?;
    let layer = gzip(&tar);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": spec.cmd, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&tar))]},
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": descriptor(CONFIG_TYPE, &config),
        "layers": [descriptor(LAYER_TYPE, &layer)],
    }))?;
    for blob in [&layer, &config, &manifest] {
        write_atomic(&blobs.join(sha256_hex(blob)), blob, 0o644)?;
    }
    let mut tagged = descriptor(MANIFEST_TYPE, &manifest);
    tagged["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    let index =
        json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [tagged]});
    write_atomic(&dir.join("index.json"), &serde_json::to_vec(&index)?, 0o644)?;
    write_atomic(&dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644)?;
    Ok(dir.to_path_buf())
}

/// A content descriptor: media type, digest, size.
fn descriptor(media_type: &str, blob: &[u8]) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": format!("sha256:{}", sha256_hex(blob)), "size": blob.len()})
}

/// The layer as an uncompressed tar, owned by root, the same bytes for the same files.
fn layer_tar(spec: &ImageSpec) -> Result<Vec<u8>> {
    let tree = tempfile::tempdir()?;
    // Containers expect a writable /tmp.
    let tmp = tree.path().join("tmp");
    std::fs::create_dir(&tmp)?;
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777))?;
    for file in &spec.files {
        let relative = file.path.strip_prefix('/').with_context(|| format!("{} is not absolute", file.path))?;
        let path = tree.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        write_atomic(&path, &file.bytes, file.mode)?;
    }
    let out = Command::new("tar")
        .args(["--owner=0", "--group=0", "--numeric-owner", "--sort=name", "--mtime=@0", "-C"])
        .arg(tree.path())
        .args(["-cf", "-", "."])
        .output()
        .context("running tar")?;
    if !out.status.success() {
        bail!("tar failed building an image layer: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_content_addressed_and_tags_its_one_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ImageSpec {
            files: vec![File { path: "/www/index.html", bytes: b"hello\n".to_vec(), mode: 0o644 }],
            cmd: vec!["/bin/true".into()],
        };
        let layout = write_layout(&dir.path().join("img"), "v1", &spec).unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let manifest = &index["manifests"][0];
        assert_eq!(manifest["annotations"]["org.opencontainers.image.ref.name"], "v1");
        // Every blob named by a descriptor is there, with that digest and size.
        let blob = |d: &serde_json::Value| {
            let digest = d["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap().to_string();
            let bytes = std::fs::read(layout.join("blobs/sha256").join(&digest)).unwrap();
            assert_eq!(sha256_hex(&bytes), digest);
            assert_eq!(bytes.len() as u64, d["size"].as_u64().unwrap());
            bytes
        };
        let manifest: serde_json::Value = serde_json::from_slice(&blob(manifest)).unwrap();
        let config: serde_json::Value = serde_json::from_slice(&blob(&manifest["config"])).unwrap();
        assert_eq!(config["config"]["Cmd"][0], "/bin/true");
        let layer = blob(&manifest["layers"][0]);
        // The config's diff_id is the digest of the layer uncompressed.
        let mut tar = Vec::new();
        std::io::Read::read_to_end(&mut gunzip(&layer), &mut tar).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], format!("sha256:{}", sha256_hex(&tar)));
        // Built twice, the same bytes: the layer is reproducible.
        let again = write_layout(&dir.path().join("again"), "v1", &spec).unwrap();
        assert_eq!(std::fs::read(layout.join("index.json")).unwrap(), std::fs::read(again.join("index.json")).unwrap());
    }

    /// gunzip through the system's `gzip -dc` (vm-tests carries no inflate crate).
    fn gunzip(bytes: &[u8]) -> std::io::Cursor<Vec<u8>> {
        use std::io::Write as _;
        let mut child = Command::new("gzip")
            .arg("-dc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        std::io::Cursor::new(child.wait_with_output().unwrap().stdout)
    }
}
