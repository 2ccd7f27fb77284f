//! Provider targets: each cloud's user-data size limit, what it is measured on, which encodings its API takes,
//! and the deterministic gzip / base64 encoding of user-data.
//!
//! Pure: bytes in, bytes or a typed error out. cloud-init auto-detects gzip on every datasource, so compression
//! is usable wherever the provider's field can carry the compressed bytes: a binary (base64) field, or a string
//! field whose datasource base64-decodes it.
//!
//! | target       | API field (provider docs)            | limit, bytes | measured on          | encodings           |
//! |--------------|--------------------------------------|--------------|----------------------|---------------------|
//! | generic      | –                                    | none         | –                    | all                 |
//! | aws          | EC2 RunInstances `UserData`          | 16,384       | decoded (pre-base64) | plain, gzip, g+b64  |
//! | hetzner      | `POST /v1/servers` `user_data`       | 32,768       | the string as sent   | plain, gzip+base64  |
//! | azure        | `osProfile.customData`               | 65,535       | decoded (pre-base64) | plain, gzip+base64  |
//! | gcp          | metadata value `user-data`           | 262,144      | the string as sent   | plain               |
//! | openstack    | Nova `POST /servers` `user_data`     | 65,535       | the base64 text      | plain, gzip+base64  |
//! | digitalocean | `POST /v2/droplets` `user_data`      | 65,536       | the string as sent   | plain               |

use std::fmt;

use crate::encoding::gzip;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Where the user-data is going. The spelling is the `--target` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Target {
    Generic,
    Aws,
    Hetzner,
    Azure,
    Gcp,
    Openstack,
    Digitalocean,
}

/// How the user-data bytes are written out. The spelling is the `--encoding` value.
///
/// There is deliberately no plain `base64`: base64 only helps to carry gzip through a text field, and tools that
/// need base64 of plain text (AWS CLI, `az`, `openstack`) already encode it themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Encoding {
    Plain,
    Gzip,
    #[value(name = "gzip+base64")]
    GzipBase64,
}

/// Encoded user-data that fits its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// The bytes to hand to the provider (or write to the output file).
    pub bytes: Vec<u8>,
    /// The size the provider compares against its limit (see [`Target::measured_on`]); not always `bytes.len()`.
    pub measured: usize,
    /// The provider's limit, `None` for [`Target::Generic`].
    pub limit: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error(
        "{} ({}) does not accept --encoding {encoding}; use --encoding {}",
        .target.provider(),
        .target.api_field(),
        join(.accepted)
    )]
    EncodingUnsupported { target: Target, encoding: Encoding, accepted: Vec<Encoding> },

    #[error(
        "user-data is {} bytes, {} bytes over {}'s limit of {} (measured on {measured_on}); {suggestion}",
        thousands(*.size),
        thousands(.size.saturating_sub(*.limit)),
        .target.provider(),
        thousands(*.limit)
    )]
    TooLarge { target: Target, size: usize, limit: usize, measured_on: &'static str, suggestion: String },
}

/// What a provider's limit counts. Providers differ: some count the bytes the instance will see, some the
/// base64 text their API stores, some the JSON string they were sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Measure {
    /// The bytes after undoing any base64, i.e. what the instance receives.
    Decoded,
    /// The value exactly as kiln writes it (a string field stores what it is given).
    AsSent,
    /// The base64 text of the decoded bytes: the field is base64 and clients encode plain files themselves.
    Base64,
}

impl Measure {
    fn description(self) -> &'static str {
        match self {
            Measure::Decoded => "the raw user-data, before base64",
            Measure::AsSent => "the user-data string as sent",
            Measure::Base64 => "the base64-encoded user-data",
        }
    }
}

/// One row of the table in the module docs.
struct Rules {
    limit: Option<usize>,
    measure: Measure,
    accepts: &'static [Encoding],
}

const ALL_ENCODINGS: &[Encoding] = &[Encoding::Plain, Encoding::Gzip, Encoding::GzipBase64];

impl Target {
    /// The `--target` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Target::Generic => "generic",
            Target::Aws => "aws",
            Target::Hetzner => "hetzner",
            Target::Azure => "azure",
            Target::Gcp => "gcp",
            Target::Openstack => "openstack",
            Target::Digitalocean => "digitalocean",
        }
    }

    /// The provider's name as users know it, for messages.
    pub fn provider(self) -> &'static str {
        match self {
            Target::Generic => "the generic target",
            Target::Aws => "AWS",
            Target::Hetzner => "Hetzner Cloud",
            Target::Azure => "Azure",
            Target::Gcp => "GCP",
            Target::Openstack => "OpenStack",
            Target::Digitalocean => "DigitalOcean",
        }
    }

    /// The API field the user-data goes into, so messages point at the provider's own documentation.
    pub fn api_field(self) -> &'static str {
        match self {
            Target::Generic => "any user-data consumer",
            Target::Aws => "EC2 RunInstances UserData",
            Target::Hetzner => "POST /v1/servers user_data",
            Target::Azure => "osProfile.customData",
            Target::Gcp => "instance metadata key user-data",
            Target::Openstack => "Nova POST /servers user_data",
            Target::Digitalocean => "POST /v2/droplets user_data",
        }
    }

    fn rules(self) -> Rules {
        match self {
            // No provider in between: a NoCloud seed or a file handed to some other tool.
            Target::Generic => Rules { limit: None, measure: Measure::AsSent, accepts: ALL_ENCODINGS },
            // EC2 `UserData`: "User data is limited to 16 KB, in raw form, before it is base64-encoded" (EC2 User
            // Guide, "Work with instance user data"). The API field is base64, but the AWS CLI (`--user-data
            // file://` for text, `fileb://` for gzip bytes) and the SDKs encode it for you, so plain and gzip are
            // what those take; gzip+base64 is for callers that pass the field verbatim (Terraform
            // `user_data_base64`, the console's "already base64-encoded" box). Either way the limit counts the
            // decoded bytes, so all three are measured the same way.
            Target::Aws => Rules { limit: Some(16_384), measure: Measure::Decoded, accepts: ALL_ENCODINGS },
            // Hetzner Cloud `POST /v1/servers` `user_data`: a JSON string, "limited to 32KiB", so raw gzip bytes
            // cannot be sent. cloud-init's Hetzner datasource base64-decodes user-data that is valid base64
            // (`DataSourceHetzner`: `maybe_b64decode`, already in Debian 12's 22.4), so gzip+base64 works; the
            // limit then counts the base64 string.
            Target::Hetzner => Rules {
                limit: Some(32_768),
                measure: Measure::AsSent,
                accepts: &[Encoding::Plain, Encoding::GzipBase64],
            },
            // Azure `osProfile.customData`: a base64 string "decoded to a binary array ... The maximum length of the
            // binary array is 65535 bytes" (ARM compute API reference). ARM enforces it on the text as "maximum
            // length of 87380 characters", which is exactly 4 * ceil(65535 / 3): the same bound. Plain is for
            // `az vm create --custom-data FILE`, which base64-encodes; raw gzip has no such client path.
            Target::Azure => Rules {
                limit: Some(65_535),
                measure: Measure::Decoded,
                accepts: &[Encoding::Plain, Encoding::GzipBase64],
            },
            // GCP metadata value `user-data`: "256 KB" per value (Compute Engine metadata limits), a UTF-8 string.
            // cloud-init's GCE datasource base64-decodes it only when a second key `user-data-encoding: base64` is
            // set, which one user-data file cannot carry, so plain only.
            Target::Gcp => Rules { limit: Some(262_144), measure: Measure::AsSent, accepts: &[Encoding::Plain] },
            // OpenStack Nova `user_data`: "must be base64 encoded and is restricted to 65535 bytes" (Nova user
            // guide); the API schema is `format: base64, maxLength: 65535`, so the limit counts the base64 text.
            // `openstack server create --user-data FILE` encodes a plain file for you.
            Target::Openstack => Rules {
                limit: Some(65_535),
                measure: Measure::Base64,
                accepts: &[Encoding::Plain, Encoding::GzipBase64],
            },
            // DigitalOcean `POST /v2/droplets` `user_data`: a string "limited to 64 KiB"; the DigitalOcean
            // datasource passes it on as is, so no base64 (and therefore no gzip) path.
            Target::Digitalocean => {
                Rules { limit: Some(65_536), measure: Measure::AsSent, accepts: &[Encoding::Plain] }
            }
        }
    }

    /// The user-data size limit in bytes, `None` when there is none.
    pub fn limit(self) -> Option<usize> {
        self.rules().limit
    }

    /// The encodings the provider's API (or its standard client) accepts.
    pub fn accepted_encodings(self) -> &'static [Encoding] {
        self.rules().accepts
    }

    /// What the limit counts, phrased for messages.
    pub fn measured_on(self) -> &'static str {
        self.rules().measure.description()
    }

    /// The size the provider compares with its limit, given the length of the bytes before any base64
    /// (plain: the user-data; gzip and gzip+base64: the gzip stream).
    fn measure(self, encoding: Encoding, decoded_len: usize) -> usize {
        match self.rules().measure {
            Measure::Decoded => decoded_len,
            Measure::AsSent => match encoding {
                Encoding::GzipBase64 => base64_len(decoded_len),
                Encoding::Plain | Encoding::Gzip => decoded_len,
            },
            Measure::Base64 => base64_len(decoded_len),
        }
    }
}

impl Encoding {
    /// The `--encoding` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Plain => "plain",
            Encoding::Gzip => "gzip",
            Encoding::GzipBase64 => "gzip+base64",
        }
    }

    fn is_compressed(self) -> bool {
        matches!(self, Encoding::Gzip | Encoding::GzipBase64)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Encodes user-data. The output depends only on the input: gzip carries no mtime, no file name, a fixed OS
/// byte and a fixed level, so the same profile always renders the same bytes (and the same instance id).
pub fn encode(user_data: &[u8], encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Plain => user_data.to_vec(),
        Encoding::Gzip => gzip(user_data),
        // Standard alphabet with padding and no line breaks or trailing newline: what every provider's base64
        // field and Python's `b64decode(validate=True)` (Hetzner's datasource) accept.
        Encoding::GzipBase64 => STANDARD.encode(gzip(user_data)).into_bytes(),
    }
}

/// Encodes user-data for a target and checks the provider's encoding and size rules.
pub fn check(target: Target, encoding: Encoding, user_data: &[u8]) -> Result<Encoded, TargetError> {
    let rules = target.rules();
    if !rules.accepts.contains(&encoding) {
        return Err(TargetError::EncodingUnsupported { target, encoding, accepted: rules.accepts.to_vec() });
    }
    let (bytes, decoded_len) = match encoding {
        Encoding::Plain => (user_data.to_vec(), user_data.len()),
        Encoding::Gzip => {
            let gz = gzip(user_data);
            let len = gz.len();
            (gz, len)
        }
        Encoding::GzipBase64 => {
            let gz = gzip(user_data);
            (STANDARD.encode(&gz).into_bytes(), gz.len())
        }
    };
    let measured = target.measure(encoding, decoded_len);
    match rules.limit {
        Some(limit) if measured > limit => Err(TargetError::TooLarge {
            target,
            size: measured,
            limit,
            measured_on: rules.measure.description(),
            suggestion: suggestion(target, encoding, user_data, limit),
        }),
        limit => Ok(Encoded { bytes, measured, limit }),
    }
}

const BAKE_HINT: &str = "move large files into a baked image (`kiln bake`, then `kiln render --stage boot`)";

/// What to do about user-data that is too large: compress it if the provider can take gzip and it would then
/// fit, otherwise bake the bulk into the image.
fn suggestion(target: Target, encoding: Encoding, user_data: &[u8], limit: usize) -> String {
    if encoding.is_compressed() {
        return format!("even compressed it does not fit; {BAKE_HINT}");
    }
    let compressed: Vec<Encoding> = target.accepted_encodings().iter().copied().filter(|e| e.is_compressed()).collect();
    if compressed.is_empty() {
        return format!("{} takes no compressed user-data; {BAKE_HINT}", target.provider());
    }
    let gzip_len = gzip(user_data).len();
    let sized: Vec<(Encoding, usize)> = compressed.iter().map(|&e| (e, target.measure(e, gzip_len))).collect();
    if let Some((e, size)) = sized.iter().find(|(_, size)| *size <= limit) {
        return format!("with --encoding {e} it would be {} bytes", thousands(*size));
    }
    match sized.first() {
        Some((e, size)) => format!("even with --encoding {e} it would be {} bytes; {BAKE_HINT}", thousands(*size)),
        None => BAKE_HINT.to_string(),
    }
}

/// Length of padded base64 of `n` bytes: 4 * ceil(n / 3).
fn base64_len(n: usize) -> usize {
    n.div_ceil(3).saturating_mul(4)
}

/// `18234` → `18,234`: sizes in messages are compared against limits the providers write with separators.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn join(encodings: &[Encoding]) -> String {
    encodings.iter().map(|e| e.name()).collect::<Vec<_>>().join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;
    use std::io::Read as _;

    const TARGETS: [Target; 7] = [
        Target::Generic,
        Target::Aws,
        Target::Hetzner,
        Target::Azure,
        Target::Gcp,
        Target::Openstack,
        Target::Digitalocean,
    ];

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data).read_to_end(&mut out).expect("valid gzip");
        out
    }

    /// Text that compresses well but not trivially, like a real cloud-config.
    fn sample(len: usize) -> Vec<u8> {
        let line = b"#cloud-config\nwrite_files:\n  - path: /etc/kiln/example\n    content: hello world\n";
        line.iter().copied().cycle().take(len).collect()
    }

    /// Bytes that gzip cannot shrink (a simple xorshift stream), to force "even compressed" paths.
    fn incompressible(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn names_match_the_cli_spelling() {
        for t in Target::value_variants() {
            let pv = t.to_possible_value().expect("no skipped variants");
            assert_eq!(pv.get_name(), t.name());
            assert_eq!(t.to_string(), t.name());
        }
        for e in Encoding::value_variants() {
            let pv = e.to_possible_value().expect("no skipped variants");
            assert_eq!(pv.get_name(), e.name());
            assert_eq!(e.to_string(), e.name());
        }
        assert_eq!(Encoding::from_str("gzip+base64", false), Ok(Encoding::GzipBase64));
        assert_eq!(Target::value_variants().len(), TARGETS.len());
    }

    #[test]
    fn gzip_is_deterministic_with_a_fixed_header() {
        let data = sample(10_000);
        let a = encode(&data, Encoding::Gzip);
        let b = encode(&data, Encoding::Gzip);
        assert_eq!(a, b);
        assert_eq!(&a[..4], &[0x1f, 0x8b, 8, 0], "magic, deflate, no flags (no FNAME)");
        assert_eq!(&a[4..8], &[0, 0, 0, 0], "mtime is zero");
        assert_eq!(a[8], 2, "XFL: maximum compression");
        assert_eq!(a[9], 255, "OS: unknown, fixed");
        assert_eq!(encode(&data, Encoding::GzipBase64), encode(&data, Encoding::GzipBase64));
    }

    #[test]
    fn gzip_round_trips() {
        for data in [Vec::new(), b"#cloud-config\n".to_vec(), sample(100_000), incompressible(5_000)] {
            assert_eq!(gunzip(&encode(&data, Encoding::Gzip)), data);
        }
    }

    #[test]
    fn gzip_base64_decodes_back_and_has_no_line_breaks() {
        let data = sample(50_000);
        let text = encode(&data, Encoding::GzipBase64);
        assert!(!text.contains(&b'\n') && !text.contains(&b'\r'));
        assert_eq!(text.len() % 4, 0, "padded");
        let gz = STANDARD.decode(&text).expect("valid base64");
        assert_eq!(gz, encode(&data, Encoding::Gzip));
        assert_eq!(gunzip(&gz), data);
    }

    #[test]
    fn plain_is_unchanged() {
        let data = sample(123);
        assert_eq!(encode(&data, Encoding::Plain), data);
    }

    /// The largest plain user-data each target takes: the limit itself, except where the limit counts base64
    /// (4 * ceil(n / 3) can step over a limit that is not a multiple of 4).
    fn max_plain_len(target: Target, limit: usize) -> usize {
        match target.rules().measure {
            Measure::Decoded | Measure::AsSent => limit,
            Measure::Base64 => limit / 4 * 3,
        }
    }

    #[test]
    fn every_target_takes_plain_up_to_its_limit_and_not_a_byte_more() {
        for target in TARGETS {
            let Some(limit) = target.limit() else {
                assert_eq!(target, Target::Generic);
                let big = sample(1 << 20);
                let out = check(target, Encoding::Plain, &big).expect("generic has no limit");
                assert_eq!((out.measured, out.limit), (big.len(), None));
                continue;
            };
            let max = max_plain_len(target, limit);
            let ok = check(target, Encoding::Plain, &sample(max)).expect("at the limit passes");
            assert_eq!(ok.bytes, sample(max));
            assert_eq!(ok.limit, Some(limit));
            assert!(ok.measured <= limit);
            if target.rules().measure != Measure::Base64 {
                assert_eq!(ok.measured, limit, "{target}: exactly the limit");
            }
            let err = check(target, Encoding::Plain, &sample(max + 1)).expect_err("one byte over fails");
            match err {
                TargetError::TooLarge { target: t, size, limit: l, .. } => {
                    assert_eq!((t, l), (target, limit));
                    assert!(size > limit);
                }
                other => panic!("{target}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn limits_are_the_documented_ones() {
        let table: Vec<(Target, Option<usize>)> = TARGETS.iter().map(|&t| (t, t.limit())).collect();
        assert_eq!(
            table,
            vec![
                (Target::Generic, None),
                (Target::Aws, Some(16_384)),
                (Target::Hetzner, Some(32_768)),
                (Target::Azure, Some(65_535)),
                (Target::Gcp, Some(262_144)),
                (Target::Openstack, Some(65_535)),
                (Target::Digitalocean, Some(65_536)),
            ]
        );
    }

    #[test]
    fn measurement_follows_each_providers_rule() {
        // AWS and Azure count decoded bytes: base64 does not count against the limit.
        assert_eq!(Target::Aws.measure(Encoding::GzipBase64, 12_000), 12_000);
        assert_eq!(Target::Azure.measure(Encoding::Plain, 65_535), 65_535);
        // Azure's 87,380-character rule on the text is the same bound as 65,535 decoded bytes.
        assert_eq!(base64_len(65_535), 87_380);
        assert!(base64_len(65_536) > 87_380);
        // Hetzner counts the string it stores: base64 text when encoded.
        assert_eq!(Target::Hetzner.measure(Encoding::GzipBase64, 3), 4);
        assert_eq!(Target::Hetzner.measure(Encoding::Plain, 3), 3);
        // OpenStack counts base64 even for plain files, which its client encodes.
        assert_eq!(Target::Openstack.measure(Encoding::Plain, 49_149), 65_532);
        assert_eq!(Target::Openstack.measure(Encoding::Plain, 49_150), 65_536);
    }

    #[test]
    fn compressed_encodings_are_checked_on_the_measured_size() {
        // Incompressible data makes gzip slightly bigger than the input, so the boundary is found by search.
        let data = incompressible(20_000);
        let ok = check(Target::Aws, Encoding::GzipBase64, &data[..15_000]).expect("fits");
        assert_eq!(ok.measured, STANDARD.decode(&ok.bytes).expect("base64").len());
        let err = check(Target::Aws, Encoding::GzipBase64, &data).expect_err("over");
        assert!(matches!(err, TargetError::TooLarge { .. }));
        let ok = check(Target::Openstack, Encoding::GzipBase64, &sample(500_000)).expect("compresses well");
        assert_eq!(ok.measured, ok.bytes.len());
    }

    #[test]
    fn unsupported_encodings_are_refused() {
        let cases = [
            (Target::Hetzner, Encoding::Gzip),
            (Target::Azure, Encoding::Gzip),
            (Target::Gcp, Encoding::Gzip),
            (Target::Gcp, Encoding::GzipBase64),
            (Target::Openstack, Encoding::Gzip),
            (Target::Digitalocean, Encoding::Gzip),
            (Target::Digitalocean, Encoding::GzipBase64),
        ];
        for (target, encoding) in cases {
            let err = check(target, encoding, b"#cloud-config\n").expect_err("refused");
            assert_eq!(
                err,
                TargetError::EncodingUnsupported { target, encoding, accepted: target.accepted_encodings().to_vec() }
            );
            let msg = err.to_string();
            assert!(msg.contains(&format!("--encoding {encoding}")), "{msg}");
            assert!(msg.contains("plain"), "{msg}");
        }
        for encoding in ALL_ENCODINGS {
            assert!(check(Target::Generic, *encoding, b"x").is_ok());
            assert!(check(Target::Aws, *encoding, b"x").is_ok());
        }
    }

    #[test]
    fn over_limit_message_says_by_how_much_and_suggests_gzip() {
        let data = sample(18_234);
        let err = check(Target::Aws, Encoding::Plain, &data).expect_err("over");
        let gz = encode(&data, Encoding::Gzip).len();
        let msg = err.to_string();
        assert!(msg.starts_with("user-data is 18,234 bytes, 1,850 bytes over AWS's limit of 16,384"), "{msg}");
        assert!(msg.contains("(measured on the raw user-data, before base64)"), "{msg}");
        assert!(msg.ends_with(&format!("with --encoding gzip it would be {} bytes", thousands(gz))), "{msg}");
    }

    #[test]
    fn over_limit_message_suggests_gzip_base64_where_only_that_is_accepted() {
        let err = check(Target::Hetzner, Encoding::Plain, &sample(40_000)).expect_err("over");
        let msg = err.to_string();
        assert!(msg.contains("7,232 bytes over Hetzner Cloud's limit of 32,768"), "{msg}");
        assert!(msg.contains("with --encoding gzip+base64 it would be"), "{msg}");
    }

    #[test]
    fn over_limit_message_suggests_baking_when_gzip_cannot_help() {
        // DigitalOcean takes no compressed user-data at all.
        let msg = check(Target::Digitalocean, Encoding::Plain, &sample(70_000)).expect_err("over").to_string();
        assert!(msg.contains("4,464 bytes over DigitalOcean's limit of 65,536"), "{msg}");
        assert!(msg.contains("kiln bake") && msg.contains("kiln render --stage boot"), "{msg}");
        // Gzip accepted but it would not fit either.
        let msg = check(Target::Aws, Encoding::Plain, &incompressible(17_000)).expect_err("over").to_string();
        assert!(msg.contains("even with --encoding gzip it would be"), "{msg}");
        assert!(msg.contains("kiln bake"), "{msg}");
        // Already compressed.
        let msg = check(Target::Aws, Encoding::Gzip, &incompressible(17_000)).expect_err("over").to_string();
        assert!(msg.contains("even compressed it does not fit") && msg.contains("kiln bake"), "{msg}");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(16_384), "16,384");
        assert_eq!(thousands(262_144), "262,144");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
