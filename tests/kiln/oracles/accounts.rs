//! accounts: the deploy user made as cloud-init 22.4.2 makes it (distros/__init__.py: add_user's
//! useradd argv, lock_passwd's `passwd -l`, write_sudo_rules' /etc/sudoers.d/90-cloud-init-users),
//! then the provisioning script's `usermod -aG` for each expected group, against the release's
//! account files, in cloud-init's stage order (tests/oracles/accounts.py). useradd must succeed
//! without a warning (a shell that is not installed is one; a name the base system has is exit 9),
//! visudo must accept the sudo rules, every write_files owner must exist when its file is written, and
//! the account must end up with the expected shell, groups and sudo rights.

use serde_json::{Map, Value};

use super::sandbox::{self, Mode, Outputs};
use super::userdata::File;
use super::{Prepared, Verdicts, distinct};

/// add_user's `useradd_opts` and `useradd_flags`.
const USERADD_OPTS: &[(&str, &str)] = &[
    ("gecos", "--comment"),
    ("homedir", "--home"),
    ("primary_group", "--gid"),
    ("uid", "--uid"),
    ("passwd", "--password"),
    ("shell", "--shell"),
    ("expiredate", "--expiredate"),
    ("inactive", "--inactive"),
    ("selinux_user", "--selinux-user"),
];
const USERADD_FLAGS: &[(&str, &str)] =
    &[("no_user_group", "--no-user-group"), ("system", "--system"), ("no_log_init", "--no-log-init")];
/// Keys create_user handles after useradd, or that need no command here.
const OTHER_KEYS: &[&str] = &["name", "lock_passwd", "sudo", "ssh_authorized_keys", "no_create_home"];
/// Files whose content changes what useradd, passwd, usermod, visudo and sudo do. Every other file
/// matters here only by its path (a home directory made early), owner and phase: its body is left out,
/// so hosts that differ only in file contents share one run.
const ACCOUNT_FILES: &[&str] = &[
    "/etc/login.defs",
    "/etc/default/useradd",
    "/etc/skel/",
    "/etc/sudoers",
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/subuid",
    "/etc/subgid",
    "/etc/nsswitch.conf",
    "/etc/pam.d/",
    "/etc/shells",
];
/// Packages whose maintainer scripts create the docker group (docker.io's postinst: addgroup --system).
const DOCKER_PACKAGES: &[&str] = &["docker.io", "docker-ce"];

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Input {
    files: Vec<File>,
    name: String,
    useradd: Vec<String>,
    lock: bool,
    sudoers: Option<String>,
    docker_group: bool,
    groups: Vec<String>,
}

pub fn check(cases: &[Prepared]) -> Verdicts {
    let inputs: Vec<Result<Input, String>> = cases.iter().map(input).collect();
    let (keys, of_case) = distinct(inputs.iter().map(|i| i.as_ref().ok().cloned()).collect());
    let outputs = sandbox::run("accounts.py", Mode::Once, &keys, |dir, key| {
        dir.files(&key.files);
        dir.write("name", &key.name);
        dir.write("useradd", key.useradd.iter().flat_map(|w| [w.as_bytes(), b"\0"].concat()).collect::<Vec<u8>>());
        if key.lock {
            dir.write("lock", "");
        }
        if let Some(rules) = &key.sudoers {
            dir.write("sudoers", rules);
        }
        if key.docker_group {
            dir.write("docker-group", "");
        }
        dir.lines("groups", &key.groups);
    });
    cases
        .iter()
        .zip(inputs)
        .zip(of_case)
        .map(|((case, input), k)| match (input, k) {
            (Err(e), _) => vec![e],
            (Ok(input), Some(k)) => judge(case, &input, &outputs[k]),
            (Ok(_), None) => unreachable!("every well-formed input was judged"),
        })
        .collect()
}

fn input(case: &Prepared) -> Result<Input, String> {
    let user = case
        .data
        .config
        .get("users")
        .and_then(Value::as_array)
        .and_then(|users| users.first())
        .and_then(Value::as_object)
        .ok_or("users[0] is not a user: cloud-init would create the image's default user instead")?;
    let name = user.get("name").and_then(Value::as_str).ok_or("users[0] has no name")?.to_string();
    let sudoers = match user.get("sudo") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => None,
        Some(Value::String(rule)) => Some(sudo_rules(&name, &[rule.as_str()])),
        Some(Value::Array(rules)) => {
            Some(sudo_rules(&name, &rules.iter().map(|r| r.as_str().unwrap_or_default()).collect::<Vec<_>>()))
        }
        Some(other) => return Err(format!("users[0].sudo is {other}: cloud-init raises TypeError")),
    };
    let packages = case.data.packages();
    Ok(Input {
        files: case
            .data
            .files
            .iter()
            .map(|f| File {
                content: if ACCOUNT_FILES.iter().any(|p| f.path.starts_with(p)) {
                    f.content.clone()
                } else {
                    Vec::new()
                },
                ..f.clone()
            })
            .collect(),
        useradd: useradd(&name, user)?,
        lock: user.get("lock_passwd").and_then(Value::as_bool).unwrap_or(true),
        sudoers,
        docker_group: packages.iter().any(|p| DOCKER_PACKAGES.contains(&p.as_str())),
        groups: case.expected.user.groups.clone(),
        name,
    })
}

/// add_user's command: `useradd NAME`, then for each key in sorted order its option (a non-empty
/// string value) or flag (a true value), then `-M` for system or no_create_home users, else `-m`.
fn useradd(name: &str, user: &Map<String, Value>) -> Result<Vec<String>, String> {
    let mut argv = vec!["useradd".to_string(), name.to_string()];
    let mut keys: Vec<&String> = user.keys().collect();
    keys.sort();
    for key in keys {
        let value = &user[key];
        if let Some((_, option)) = USERADD_OPTS.iter().find(|(k, _)| k == key) {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) if key == "uid" => n.to_string(),
                _ => continue,
            };
            if !text.is_empty() {
                argv.extend([option.to_string(), text]);
            }
        } else if let Some((_, flag)) = USERADD_FLAGS.iter().find(|(k, _)| k == key) {
            if value.as_bool() == Some(true) {
                argv.push(flag.to_string());
            }
        } else if !OTHER_KEYS.contains(&key.as_str()) {
            return Err(format!("users[0].{key} is not modelled by this oracle (cloud-init's add_user handles more)"));
        }
    }
    let no_home = ["no_create_home", "system"].iter().any(|k| user.get(*k).and_then(Value::as_bool) == Some(true));
    argv.push(if no_home { "-M" } else { "-m" }.to_string());
    Ok(argv)
}

/// write_sudo_rules' text after its header line.
fn sudo_rules(name: &str, rules: &[&str]) -> String {
    let mut lines = vec![String::new(), format!("# User rules for {name}")];
    lines.extend(rules.iter().map(|rule| format!("{name} {rule}")));
    lines.join("\n") + "\n"
}

fn judge(case: &Prepared, input: &Input, out: &Outputs) -> Vec<String> {
    let mut failures = Vec::new();
    for (phase, when) in [
        ("init", "cloud-init's write-files runs (before users and packages exist)"),
        ("deferred", "write-files-deferred runs (after users and packages)"),
    ] {
        for line in out.text(&format!("owners-{phase}")).unwrap_or_default().lines() {
            let (path, owner) = line.split_once('\t').unwrap_or((line, "?"));
            failures.push(format!("write_files {path}: owner {owner} does not exist when {when}"));
        }
    }
    for line in out.text("refused").unwrap_or_default().lines() {
        failures.push(format!("write_files {line}: writes into the kernel's /proc, /sys or /dev"));
    }
    for line in out.text("unwritable").unwrap_or_default().lines() {
        failures.push(format!("write_files: {line}"));
    }
    let useradd = out.record("useradd");
    if !useradd.clean() {
        failures.push(format!("`{}` (as cloud-init runs it): {}", input.useradd.join(" "), useradd.said()));
        return failures;
    }
    if let Some(lock) = out.maybe_record("lock").filter(|r| r.rc != 0) {
        failures.push(format!("passwd -l {}: {}", input.name, lock.said()));
    }
    if let Some(visudo) = out.maybe_record("visudo").filter(|r| !r.clean()) {
        failures.push(format!("visudo -c with cloud-init's sudo rules: {}", visudo.said()));
    }
    for (i, group) in input.groups.iter().enumerate() {
        let usermod = out.record(&format!("usermod-{i}"));
        if !usermod.clean() {
            failures.push(format!("usermod -aG {group} {}: {}", input.name, usermod.said()));
        }
    }
    let user = &case.expected.user;
    let entry = out.record("passwd").out;
    let shell = entry.trim().rsplit(':').next().unwrap_or_default();
    if shell != user.shell {
        failures.push(format!("the account's shell is {shell:?}, expected {:?}", user.shell));
    }
    let groups = out.record("id").out;
    for group in &user.groups {
        if !groups.split_whitespace().any(|g| g == group) {
            failures.push(format!("{} is not in group {group} (id -nG: {})", user.name, groups.trim()));
        }
    }
    let sudo = out.record("sudo");
    let passwordless = sudo.rc == 0 && sudo.out.contains("NOPASSWD: ALL");
    if passwordless != user.passwordless_sudo {
        failures.push(format!(
            "passwordless sudo is {passwordless}, expected {} (sudo -l -U {}: {})",
            user.passwordless_sudo,
            user.name,
            sudo.said()
        ));
    }
    failures
}
