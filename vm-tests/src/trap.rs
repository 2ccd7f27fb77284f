//! The sshd override trap (issue 11): Ubuntu's cloud images ship `/etc/ssh/sshd_config.d/50-cloud-init.conf`
//! with `PasswordAuthentication yes`, and hosts whose hardening file sorted after it were compromised. The
//! scenario boots a copy of the base image that carries that file (with `PermitRootLogin yes` too), and
//! proves from outside that sshd offers public keys only, for the deploy user and for root.
//!
//! The file goes into the image offline, with Debian's own tools and no loop device or mount: the image
//! is converted to raw, `sfdisk --json` gives the root partition's offset, `debugfs -w` writes the file
//! into the ext4 file system there, and the result is read back before it is converted to qcow2.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, ensure};
use kiln::effects::process::run;
use kiln::verify::Check;
use serde_json::Value;

/// What the image carries, as Ubuntu's images do (plus root login, which a careless image adds).
pub const TRAP_PATH: &str = "/etc/ssh/sshd_config.d/50-cloud-init.conf";
pub const TRAP_CONTENT: &str = "PasswordAuthentication yes\nPermitRootLogin yes\n";

/// Debian's Python, where `python3-paramiko` installs (a `python3` earlier on PATH may be another one).
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// Asks sshd which methods it lets a user authenticate with: paramiko's `auth_none` fails with the
/// server's list (RFC 4252 §5.1: "authentications that can continue"), a structured answer, no login.
const OFFERED_METHODS: &str = r#"
import json, socket, sys, paramiko
port, users = int(sys.argv[1]), sys.argv[2:]
offered = {}
for user in users:
    transport = paramiko.Transport(socket.create_connection(("127.0.0.1", port), timeout=30))
    try:
        transport.start_client(timeout=30)
        try:
            transport.auth_none(user)
            offered[user] = ["none"]
        except paramiko.BadAuthenticationType as e:
            offered[user] = sorted(e.allowed_types)
    finally:
        transport.close()
print(json.dumps(offered))
"#;

/// The check's name, per user.
pub fn check_name(user: &str) -> String {
    format!("from outside, sshd lets {user} log in with a public key only")
}

/// A copy of `base` at `run_dir/trap.qcow2` whose root file system carries [`TRAP_PATH`].
pub fn image(base: &Path, run_dir: &Path) -> Result<PathBuf> {
    let raw = run_dir.join("trap.raw");
    let image = run_dir.join("trap.qcow2");
    crate::disk::to_raw(base, &raw)?;
    let device = crate::disk::root_device(&raw)?;
    let content = run_dir.join("50-cloud-init.conf");
    std::fs::write(&content, TRAP_CONTENT)?;
    let (dir, name) = TRAP_PATH.rsplit_once('/').context("an absolute path")?;
    let commands = run_dir.join("debugfs.commands");
    std::fs::write(
        &commands,
        format!(
            "cd {dir}\nwrite {} {name}\nsif {name} mode 0100644\nsif {name} uid 0\nsif {name} gid 0\n",
            content.display()
        ),
    )?;
    run(Command::new("debugfs").arg("-w").arg("-f").arg(&commands).arg(&device), "debugfs -w")?;
    // debugfs carries on past a failed command, so its exit status proves nothing: read the file back.
    let back = run(Command::new("debugfs").arg("-R").arg(format!("cat {TRAP_PATH}")).arg(&device), "debugfs cat")?;
    ensure!(back.stdout == TRAP_CONTENT.as_bytes(), "{TRAP_PATH} did not arrive in the image: {:?}", back.stdout);
    run(Command::new("qemu-img").args(["convert", "-O", "qcow2"]).arg(&raw).arg(&image), "qemu-img convert")?;
    std::fs::remove_file(&raw)?;
    Ok(image)
}

/// For each user, from outside through the forwarded SSH port: sshd offers `publickey` and nothing else.
pub fn checks(host_port: u16, users: &[&str]) -> Result<Vec<Check>> {
    let out = run(
        Command::new(DEBIAN_PYTHON).arg("-c").arg(OFFERED_METHODS).arg(host_port.to_string()).args(users),
        "asking sshd for its authentication methods (python3-paramiko)",
    )?;
    let offered: Value = serde_json::from_slice(&out.stdout).context("the methods sshd offered, as JSON")?;
    Ok(users
        .iter()
        .map(|user| {
            let methods: Vec<&str> =
                offered[*user].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            Check::new(check_name(user), "publickey", methods.join(","), methods == ["publickey"])
        })
        .collect())
}
