//! sshd: the release's OpenSSH (9.2) judges the configuration the host ends up with: Debian's
//! sshd_config, the `50-cloud-init.conf` Ubuntu's cloud images ship (passwords and root login on), every file the user-data writes under /etc/ssh/, host keys of exactly the types
//! cloud-init generates (ssh_genkeytypes) and cloud-init's PasswordAuthentication drop-in
//! (tests/oracles/sshd.sh). `sshd -t` must load it silently, and `sshd -T -C …` (sshd's own
//! evaluation, Match blocks included) must show, for the deploy user and for root connecting from a
//! public, a private, a CGNAT (Tailscale) and an IPv6 address: port 22 only, public keys and PAM on,
//! the password, keyboard-interactive and root-login values `kiln expect` declares, and for the deploy
//! user nothing that stops a key login (Allow/Deny Users/Groups, ForceCommand, ChrootDirectory,
//! AuthenticationMethods, AuthorizedKeysFile without .ssh/authorized_keys).

use std::collections::BTreeMap;

use serde_json::Value;

use super::sandbox::{self, Mode, Root};
use super::userdata::File;
use super::{Prepared, Verdicts, distinct};

const SSH_FILES: &str = "/etc/ssh/";
/// Where clients come from: the internet, a private network, Tailscale's CGNAT range, IPv6.
const CLIENT_ADDRESSES: &[&str] = &["192.0.2.1", "10.0.0.1", "100.64.0.1", "2001:db8::1"];
const SSH_PORT: &str = "22";

/// Who connects in the queries when the configuration has no Match block: then sshd's effective
/// configuration is the same for every user, and hosts that differ only in the user's name share a run
/// (Allow/Deny Users/Groups are judged here, against the real name).
const ANY_USER: &str = "kiln-oracle-user";

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Input {
    /// Whose sshd judges: the case's release's (`Root::for_openssh`).
    root: Root,
    files: Vec<File>,
    key_types: Vec<String>,
    pwauth: Option<&'static str>,
    /// The user sshd -T is asked about: the deploy user when a Match block could tell users apart.
    user: String,
    /// The keywords of kiln's drop-in the provisioning step's effective check is given (its global ones).
    kiln_keywords: Vec<String>,
}

pub fn check(cases: &[Prepared]) -> Verdicts {
    let release_matches = release_has_match();
    let inputs = cases
        .iter()
        .map(|c| {
            let key_types = c.data.ssh_key_types();
            let files: Vec<File> = c.data.files_under(&[SSH_FILES]).cloned().collect();
            let matches = release_matches || files.iter().any(|f| has_match(&String::from_utf8_lossy(&f.content)));
            let user = if matches { c.expected.user.name.clone() } else { ANY_USER.to_string() };
            let root = Root::for_openssh(c.release);
            let kiln_keywords = c.expected.ssh.for_root.iter().map(|v| v.keyword.clone()).collect();
            Some(Input { root, files, key_types, pwauth: pwauth(c.data.config.get("ssh_pwauth")), user, kiln_keywords })
        })
        .collect();
    let (keys, of_case) = distinct(inputs);
    let outputs = sandbox::run_per_root(
        "sshd.sh",
        Mode::Each,
        &keys,
        |key| key.root,
        |input, key| {
            input.files(&key.files);
            input.lines("keytypes", &key.key_types);
            if let Some(value) = key.pwauth {
                input.write("pwauth", value);
            }
            input.lines("queries", queries(&key.user).into_iter().map(|(spec, _)| spec));
            input.write("effective-check", kiln::lower::SSHD_EFFECTIVE_CHECK);
            input.write("kiln-drop-in", kiln::lower::SSHD_DROP_IN);
            input.lines("kiln-keywords", &key.kiln_keywords);
        },
    );
    cases
        .iter()
        .zip(of_case)
        .map(|(case, k)| {
            let k = k.expect("every case has an input");
            judge(case, &keys[k], &outputs[k])
        })
        .collect()
}

/// Whether sshd configuration text has a Match block (keywords are case-insensitive).
fn has_match(text: &str) -> bool {
    text.lines().any(|l| l.split_whitespace().next().is_some_and(|w| w.eq_ignore_ascii_case("match")))
}

/// Whether the release's own sshd configuration (in the oracle root) has a Match block.
fn release_has_match() -> bool {
    let dir = sandbox::root().join("etc/ssh");
    let mut texts = vec![std::fs::read_to_string(dir.join("sshd_config")).expect("the root's sshd_config")];
    for entry in std::fs::read_dir(dir.join("sshd_config.d")).expect("the root's sshd_config.d") {
        texts.push(std::fs::read_to_string(entry.expect("sshd_config.d entry").path()).expect("a drop-in"));
    }
    texts.iter().any(|t| has_match(t))
}

/// cc_set_passwords.handle_ssh_pwauth: util.is_true → yes, util.is_false → no, anything else unchanged.
fn pwauth(value: Option<&Value>) -> Option<&'static str> {
    match value? {
        Value::Bool(true) => Some("yes"),
        Value::Bool(false) => Some("no"),
        Value::String(s) if ["true", "1", "on", "yes"].contains(&s.to_lowercase().as_str()) => Some("yes"),
        Value::String(s) if ["false", "0", "off", "no"].contains(&s.to_lowercase().as_str()) => Some("no"),
        _ => None,
    }
}

/// `sshd -T -C` connection specs, with the user each is for.
fn queries(user: &str) -> Vec<(String, String)> {
    let mut specs = Vec::new();
    for who in [user, "root"] {
        for addr in CLIENT_ADDRESSES {
            specs.push((
                format!("user={who},host=client.example,addr={addr},laddr=192.0.2.2,lport={SSH_PORT}"),
                who.into(),
            ));
        }
    }
    specs
}

fn judge(case: &Prepared, input: &Input, out: &sandbox::Outputs) -> Vec<String> {
    let mut failures = Vec::new();
    for key_type in &input.key_types {
        if let Some(keygen) = out.maybe_record(&format!("keygen-{key_type}")).filter(|r| r.rc != 0) {
            failures.push(format!("cloud-init's ssh-keygen -t {key_type}: {}", keygen.said()));
        }
    }
    if let Some(pwauth) = out.maybe_record("pwauth").filter(|r| !r.clean()) {
        failures.push(format!("cloud-init's ssh_pwauth edit: {}", pwauth.said()));
    }
    let test = out.record("test");
    if !test.clean() {
        failures.push(format!("sshd -t: {}", test.said()));
        return failures;
    }
    // The provisioning step's own check, run against this sshd: it passes exactly when kiln's values win.
    let effective = out.record("effective");
    if !effective.clean() {
        failures.push(format!("the provisioning step's effective check: {}", effective.said()));
    }
    let ssh = &case.expected.ssh;
    let user = &case.expected.user;
    let groups: Vec<&str> = std::iter::once(user.name.as_str()).chain(user.groups.iter().map(String::as_str)).collect();
    for (i, (spec, who)) in queries(&input.user).iter().enumerate() {
        let query = out.record(&format!("query-{i}"));
        if !query.clean() {
            failures.push(format!("sshd -T -C {spec}: {}", query.said()));
            continue;
        }
        let config = parse(&query.out);
        let mut wrong = Vec::new();
        let mut want = |key: &str, value: &str| {
            let got = config.get(key).map(|v| v.join(" | ")).unwrap_or_else(|| "(unset)".into());
            if got != value {
                wrong.push(format!("{key} is {got}, expected {value}"));
            }
        };
        want("port", SSH_PORT);
        want("pubkeyauthentication", "yes");
        want("usepam", "yes");
        // Every keyword kiln sets, as sshd itself decides it for this user (Match blocks applied).
        let settings = if who == "root" { &ssh.for_root } else { &ssh.for_deploy_user };
        for setting in settings {
            want(&setting.keyword, &setting.values.join(" | "));
        }
        if who != "root" {
            wrong.extend(key_login_blockers(&config, &user.name, &groups));
        }
        if !wrong.is_empty() {
            failures.push(format!("sshd -T -C {spec}: {}", wrong.join("; ")));
        }
    }
    failures
}

/// What would stop USER from logging in with a key, in sshd's effective configuration.
fn key_login_blockers(config: &BTreeMap<String, Vec<String>>, user: &str, groups: &[&str]) -> Vec<String> {
    let mut blockers = Vec::new();
    let values = |key: &str| config.get(key).cloned().unwrap_or_default();
    // AllowUsers/DenyUsers entries are USER or USER@HOST patterns; the host part is not judged here.
    let user_matches = |entry: &String| glob(entry.split('@').next().unwrap_or(entry), user);
    let group_matches = |entry: &String| groups.iter().any(|g| glob(entry, g));
    let allow_users = values("allowusers");
    if !allow_users.is_empty() && !allow_users.iter().any(user_matches) {
        blockers.push(format!("AllowUsers {} leaves {user} out", allow_users.join(" ")));
    }
    if let Some(entry) = values("denyusers").iter().find(|e| user_matches(e)) {
        blockers.push(format!("DenyUsers {entry} names {user}"));
    }
    let allow_groups = values("allowgroups");
    if !allow_groups.is_empty() && !allow_groups.iter().any(group_matches) {
        blockers.push(format!("AllowGroups {} leaves {user} ({}) out", allow_groups.join(" "), groups.join(" ")));
    }
    if let Some(entry) = values("denygroups").iter().find(|e| group_matches(e)) {
        blockers.push(format!("DenyGroups {entry} names a group of {user}"));
    }
    for key in ["forcecommand", "chrootdirectory"] {
        if let Some(value) = config.get(key).map(|v| v.join(" ")).filter(|v| v != "none") {
            blockers.push(format!("{key} {value} applies to {user}"));
        }
    }
    if let Some(methods) = config.get("authenticationmethods").map(|v| v.join(" "))
        && methods != "any"
        && !methods.split_whitespace().any(|list| list == "publickey")
    {
        blockers.push(format!("authenticationmethods {methods} needs more than a key"));
    }
    let files = values("authorizedkeysfile").join(" ");
    if !files.split_whitespace().any(|f| f == ".ssh/authorized_keys" || f == "%h/.ssh/authorized_keys") {
        blockers.push(format!(
            "authorizedkeysfile {files} does not read ~/.ssh/authorized_keys, where cloud-init writes the keys"
        ));
    }
    blockers
}

/// `sshd -T` output: each line `keyword value…`; repeated keywords keep every value.
fn parse(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut config: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some((key, value)) = line.split_once(' ') {
            config.entry(key.to_string()).or_default().push(value.to_string());
        }
    }
    config
}

/// OpenSSH's match_pattern: `*` any run, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    go(&pattern.chars().collect::<Vec<_>>(), &text.chars().collect::<Vec<_>>())
}
