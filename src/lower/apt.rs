//! Package sources as files: key files and deb822 `.sources` (no gpg needed in the guest), plus the
//! first-boot speed-ups measured in docs/design.md §4.5 (no translations; unsafe-io only until provisioning ends).

use base64::Engine as _;

use super::Parts;
use crate::cloud_config::WriteFile;
use crate::model::{Model, Repository, RepositoryKey};

pub const UNSAFE_IO_PATH: &str = "/etc/dpkg/dpkg.cfg.d/kiln-unsafe-io";
pub const NO_LANGUAGES_PATH: &str = "/etc/apt/apt.conf.d/90kiln-no-languages";
pub const NO_RECOMMENDS_PATH: &str = "/etc/apt/apt.conf.d/90kiln-first-boot-no-recommends";
/// needrestart reads `conf.d/*.conf` after its own needrestart.conf (its last lines), so this wins.
pub const NEEDRESTART_PATH: &str = "/etc/needrestart/conf.d/90-kiln.conf";
/// Perl, as needrestart evaluates its configuration: restart without asking; kernel hints on stderr only
/// (needrestart 3.6's needrestart.conf documents both values).
const NEEDRESTART_CONF: &str = "# Managed by kiln: restart services after upgrades without asking (apt runs unattended here).\n\
                                $nrconf{restart} = 'a';\n\
                                # Kernel upgrades are reported in the log instead of an interactive notice.\n\
                                $nrconf{kernelhints} = -1;\n";

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
    if model.host.release.facts().needrestart_prompts || model.hardening.automatic_updates {
        // needrestart runs after every apt install and, on Ubuntu since 22.04, asks which services to
        // restart: a question nobody answers hangs cloud-init's package runs and unattended upgrades.
        // Restarting automatically is what the question's default answers would do, without the wait.
        // On Debian it is there when a package recommends it (docker.io on Debian 13) and, unasked, only
        // lists what runs replaced code: a security update would then leave the old library running.
        parts.claim_prefix("/etc/needrestart/");
        parts.bake_file(WriteFile::new(NEEDRESTART_PATH, 0o644, NEEDRESTART_CONF));
    }
    if let Some(archive) = &model.apt.debian {
        // Both places apt reads the archive from are replaced: the one-line list (Debian 12, Ubuntu 22.04
        // images) and the deb822 file of the same name (Debian 13's debian.sources, Ubuntu 24.04's ubuntu.sources).
        parts.bake_file(WriteFile::new(
            "/etc/apt/sources.list",
            0o644,
            format!("# Managed by kiln: the archive's sources are in {}\n", sources_path(archive)),
        ));
        repository(archive, parts);
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
    let mut body = format!("# Managed by kiln.\n{}", stanza(&repo.url, &repo.suites, &repo.components, &key_path));
    if let Some(security) = &repo.security {
        body.push('\n');
        body.push_str(&stanza(&security.url, std::slice::from_ref(&security.suite), &repo.components, &key_path));
    }
    parts.bake_file(WriteFile::new(sources_path(repo), 0o644, body));
}

fn sources_path(repo: &Repository) -> String {
    format!("/etc/apt/sources.list.d/{}.sources", repo.name)
}

/// One deb822 paragraph (sources.list(5)); paragraphs are separated by a blank line.
pub fn stanza(url: &str, suites: &[String], components: &[String], key_path: &str) -> String {
    let mut text = format!("Types: deb\nURIs: {url}\nSuites: {}\n", suites.join(" "));
    if !components.is_empty() {
        text.push_str(&format!("Components: {}\n", components.join(" ")));
    }
    text.push_str(&format!("Signed-By: {key_path}\n"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Perl (what needrestart is written in, and how it reads conf.d: `eval` of the file) takes the file and
    /// ends with the values kiln means; a syntax error would stop needrestart from loading it.
    #[test]
    fn needrestart_reads_the_values_kiln_means() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), NEEDRESTART_CONF).unwrap();
        let out = std::process::Command::new("perl")
            .args(["-e", r#"our %nrconf; do $ARGV[0]; die $@ if $@; print "$nrconf{restart} $nrconf{kernelhints}""#])
            .arg(file.path())
            .output()
            .expect("perl runs (perl-base)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a -1");
    }
}
