//! A fact a component declares reaches both the user-data and `kiln expect`: a made-up component,
//! lowered after the real ones, shows up on both sides without either being told about it.

use super::facts::{FirewallRule, ListenPort, ListenScope, Listener, SocketOwner};
use super::*;
use crate::expect::{self, UfwRule};
use crate::model::{PortRange, Proto};

/// What a new section would do: install a daemon, start it, open its port, keep a secret for it.
fn extra_component(parts: &mut Parts, secret: &Secret) {
    parts.component = "`extra`";
    parts.package("extra-daemon=1.0-1");
    parts.package_as_dependency("libextra1", "extra-daemon");
    parts.kept_secret_file("/etc/kiln/secrets/extra-token", Some(secret));
    let socket = Listener {
        proto: Proto::Tcp,
        port: ListenPort::Fixed(9443),
        scope: ListenScope::Any,
        owner: SocketOwner::Program("extrad".into()),
    };
    let start = parts.ensure_running("extra.service", vec![socket]);
    let open = parts.firewall_rule(
        FirewallRule::allow(Proto::Tcp, PortRange { start: 9443, end: 9444 }).comment(Some("extra API".into())),
    );
    let join = parts.add_deploy_user_to_group("deploy", "extra");
    parts.bake_step(Step::new("extra: start and open", vec![start, open, join]));
}

pub(crate) fn example_model() -> Model {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/app.yaml");
    let loaded = crate::pipeline::load(&path).expect("profiles/app.yaml loads");
    assert!(!loaded.report.has_errors());
    loaded.model.expect("profiles/app.yaml is valid")
}

#[test]
fn a_fact_added_by_a_component_is_in_the_user_data_and_in_kiln_expect() {
    let model = example_model();
    let secrets = crate::secrets::resolve(&model, None).unwrap();
    let before = expect::expect(&model);
    let mut parts = components(&model, &secrets);
    let secret = secrets.cloudflared_token.clone().expect("a placeholder");
    extra_component(&mut parts, &secret);
    let facts = parts.facts.clone();
    let config = assemble(&model, parts, Stage::Full);
    let expected = expect::from_facts(&model, &facts);

    // The user-data: the package listed (its dependency not), the secret file, the commands.
    assert!(config.packages.contains(&"extra-daemon=1.0-1".to_string()));
    assert!(!config.packages.contains(&"libextra1".to_string()));
    assert!(config.write_files.iter().any(|f| f.path == "/etc/kiln/secrets/extra-token"
        && f.permissions == "0600"
        && f.content.0 == format!("{}\n", secret.expose())));
    let script = &config.write_files.iter().find(|f| f.path == PROVISION_PATH).unwrap().content.0;
    for line in [
        "ensure_running extra.service",
        "ufw allow proto tcp from any to any port 9443:9444 comment 'extra API'",
        "usermod -aG extra deploy",
    ] {
        assert!(script.lines().any(|l| l.trim() == line), "{line} not in\n{script}");
    }

    // `kiln expect`: the same facts, and nothing else changed.
    let mut added: Vec<String> = expected.packages.clone();
    added.retain(|p| !before.packages.contains(p));
    assert_eq!(added, ["extra-daemon", "libextra1"]);
    assert_eq!(expected.units.last().map(|u| u.name.as_str()), Some("extra.service"));
    assert!(expected.listeners.iter().any(|l| l.port == 9443 && l.process == "extrad" && l.scope == "any"));
    assert!(expected.secret_files.iter().any(|f| f.path == "/etc/kiln/secrets/extra-token" && f.present));
    assert!(expected.user.groups.contains(&"extra".to_string()));
    let rules = &expected.firewall.as_ref().unwrap().rules;
    let opened: Vec<&UfwRule> = rules.iter().filter(|r| r.port == "9443:9444").collect();
    assert_eq!(opened.len(), 2, "one rule per address family: {opened:?}");
    assert!(opened.iter().all(|r| r.comment.as_deref() == Some("extra API") && r.proto == "tcp"));
    assert_eq!(rules.len(), before.firewall.as_ref().unwrap().rules.len() + 2);
    // It is open to everyone, so the probes from outside try it.
    assert!(expected.outside.iter().any(|p| p.port == 9443 && p.reachable));
}

/// Answers every secret reference with the same made-up value.
struct AnySecret;

impl crate::secrets::SecretSource for AnySecret {
    fn lookup(&self, _: &crate::model::SecretRef) -> Result<String, String> {
        Ok("not-a-placeholder".into())
    }
}

/// `expect` calls the components once, with placeholder secrets: the same facts as a real rendering.
#[test]
fn placeholder_secrets_give_the_facts_of_a_real_rendering() {
    let model = example_model();
    let real = crate::secrets::resolve(&model, Some(&AnySecret)).unwrap();
    assert!(real.cloudflared_token.as_ref().is_some_and(|s| !s.is_redacted()));
    assert_eq!(components(&model, &real).facts, facts(&model));
    assert!(model.cloudflared.is_some() && model.tailscale.is_some(), "the example has the secret-gated sections");
}
