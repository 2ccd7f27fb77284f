//! Package sources as files: key files and deb822 `.sources` (no gpg needed in the guest), plus the
//! first-boot speed-ups measured in docs/design.md §4.5 (no translations; unsafe-io only until provisioning ends).

use base64::Engine as _;

use super::Parts;
use crate::cloud_config::WriteFile;
use crate::model::{Model, Repository, RepositoryKey};

pub const UNSAFE_IO_PATH: &str = "/etc/dpkg/dpkg.cfg.d/kiln-unsafe-io";
pub const NO_LANGUAGES_PATH: &str = "/etc/apt/apt.conf.d/90kiln-no-languages";
pub const NO_RECOMMENDS_PATH: &str = "/etc/apt/apt.conf.d/90kiln-first-boot-no-recommends";

pub(super) fn lower(model: &Model, parts: &mut Parts) {
    // The repositories kiln configures, and the keys apt trusts: a profile file there would add or
    // change a package source outside `apt`, unchecked.
    for tree in ["/etc/apt/sources.list.d/", "/etc/apt/keyrings/", "/etc/apt/trusted.gpg.d/"] {
        parts.claim_prefix(tree);
    }
    parts.claim("/etc/apt/sources.list");
    parts.claim("/etc/apt/trusted.gpg");
    parts.bake_file(WriteFile::new(
        NO_LANGUAGES_PATH,
        0o644,
        "// Managed by kiln: no translation downloads.\nAcquire::Languages \"none\";\n",
    ));
    // Skipping fsync during first boot's package installs saves about a minute under emulation; the
    // provisioning script removes this file when it finishes, so later upgrades are safe again.
    parts.bake_file(WriteFile::new(
        UNSAFE_IO_PATH,
        0o644,
        "# Managed by kiln: removed when first-boot provisioning ends.\nforce-unsafe-io\n",
    ));
    if !model.apt.install_recommends {
        // First boot only, like unsafe-io: later `apt install`s on the host behave as Debian's do.
        parts.bake_file(WriteFile::new(
            NO_RECOMMENDS_PATH,
            0o644,
            "// Managed by kiln: removed when first-boot provisioning ends.\nAPT::Install-Recommends \"false\";\n",
        ));
    }
    if let Some(debian) = &model.apt.debian {
        parts.bake_file(WriteFile::new(
            "/etc/apt/sources.list",
            0o644,
            "# Managed by kiln: Debian's sources are in /etc/apt/sources.list.d/debian.sources\n",
        ));
        repository(debian, parts);
    }
    for repo in [&model.apt.docker, &model.apt.cloudflared, &model.apt.tailscale].into_iter().flatten() {
        repository(repo, parts);
    }
}

fn repository(repo: &Repository, parts: &mut Parts) {
    let key_path = match &repo.key {
        RepositoryKey::System(path) => path.to_string(),
        RepositoryKey::Embedded { bytes, armored } => {
            let extension = if *armored { "asc" } else { "gpg" };
            let path = format!("/etc/apt/keyrings/{}.{extension}", repo.name);
            let mut file = if *armored {
                WriteFile::new(&path, 0o644, String::from_utf8_lossy(bytes).into_owned())
            } else {
                let mut f = WriteFile::new(&path, 0o644, base64::engine::general_purpose::STANDARD.encode(bytes));
                f.encoding = Some("b64".into());
                f
            };
            file.owner = "root:root".into();
            parts.bake_file(file);
            path
        }
    };
    let mut body = format!("# Managed by kiln.\nTypes: deb\nURIs: {}\nSuites: {}\n", repo.url, repo.suites.join(" "));
    if !repo.components.is_empty() {
        body.push_str(&format!("Components: {}\n", repo.components.join(" ")));
    }
    body.push_str(&format!("Signed-By: {key_path}\n"));
    parts.bake_file(WriteFile::new(format!("/etc/apt/sources.list.d/{}.sources", repo.name), 0o644, body));
}
