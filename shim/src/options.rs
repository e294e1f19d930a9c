//! What containerd writes on the stdin of `<shim> start`, and the runtime options inside it.
//!
//! containerd up to 2.2 writes the handler's runtime options as a protobuf `Any` (or nothing);
//! 2.3 and later write a `containerd.runtime.bootstrap.v1.BootstrapParams` whose extensions
//! carry the options. moat needs only `runtimeoptions.v1.Options` (`ConfigPath`,
//! `ConfigBody`), so this module finds them in whichever envelope arrived.
//!
//! The task options of a Create request (`decode_task_options`) are read too: containerd
//! 2.x's CRI sets runc's type, `containerd.runc.v1.Options`, with `IoUid`/`IoGid` for a pod
//! with `hostUsers: false` (the host IDs of the pod's root, which must own the stdio the
//! container gets, as containerd-shim-runc-v2 makes them); moat's own type may come there too.
//!
//! Fail closed: nothing on stdin means no options (the default config is used), and options
//! of another handler's type (`containerd.runc.v1.Options`, which containerd 2.x's CRI sets for
//! `hostUsers: false`) carry none of moat's; but bytes that cannot be read, or moat's own
//! options type that does not decode, are an [`OptionsError`]: the pod is refused rather than
//! run under a config the operator did not choose.
//!
//! The messages are decoded with the protobuf crate's wire reader rather than generated
//! types: containerd-shim-protos 0.11 has neither `runtimeoptions` nor `BootstrapParams`, and
//! we read three fields.
//!
//! containerd's `bootstrap.proto` also allows `BootstrapParams` to be written as JSON. Both
//! JSON forms a Go writer can produce are read: `encoding/json` (snake_case keys, an Any as
//! `{"type_url", "value": base64}`) and protojson (lowerCamel keys, an Any as `{"@type", ...}`
//! with either a base64 `value` or the message's own fields inline).

use containerd_shim_protos::protobuf::{rt::WireType, CodedInputStream};
use serde_json::{Map, Value};

/// The type URL containerd's CRI gives `runtimeoptions.v1.Options` (1.6 writes it bare;
/// others may prefix `type.googleapis.com/`).
const RUNTIME_OPTIONS_TYPE: &str = "runtimeoptions.v1.Options";

/// The type URL of runc's options, which containerd 2.x's CRI uses for `IoUid`/`IoGid`.
pub const RUNC_OPTIONS_TYPE: &str = "containerd.runc.v1.Options";

/// The highest field number of `BootstrapParams` (`socket_dir`); a protobuf message with
/// none of fields 1..=this is not one.
const BOOTSTRAP_LAST_FIELD: u32 = 9;

/// moat's runtime options, as the containerd handler config sets them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// `ConfigPath`: moat's TOML config file.
    pub config_path: Option<String>,
    /// `ConfigBody`: an inline TOML config, used when no path is given.
    pub config_body: Option<String>,
}

/// Who must own the stdio the container process gets (runc options' `IoUid`/`IoGid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoOwner {
    pub uid: u32,
    pub gid: u32,
}

/// The options of a Create request (`CreateTaskRequest.options`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOptions {
    /// None were set.
    None,
    /// moat's own type.
    Moat(RuntimeOptions),
    /// runc's type (containerd 2.x's CRI for `hostUsers: false`): only `IoUid`/`IoGid` mean
    /// something to moat; `None` when both are 0 (unset).
    Runc { io_owner: Option<IoOwner> },
    /// Another type: nothing moat reads.
    Other { type_url: String },
}

/// What `start` found on its stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartInput {
    /// Nothing: the handler has no options.
    Empty,
    /// A bare options `Any` (containerd 1.6 to 2.2).
    Options { type_url: String, options: Option<RuntimeOptions> },
    /// A `BootstrapParams` (containerd 2.3+), in protobuf or JSON.
    Bootstrap { namespace: String, containerd_version: String, options: Option<RuntimeOptions> },
}

/// The stdin of `start` could not be read as runtime options: the pod is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// The bytes are no envelope containerd writes (or stdin could not be read).
    #[error(
        "moat cannot read the runtime options containerd wrote on the stdin of `start` \
         ({envelope}): {reason}; refusing to run the pod under a config nobody chose"
    )]
    Unreadable { envelope: &'static str, reason: String },
    /// moat's own options type is there but does not decode.
    #[error(
        "moat cannot decode its runtime options of type {type_url} (the runtime handler's \
         `options` table in containerd's config): {reason}; refusing to run the pod without them"
    )]
    BadOptions { type_url: String, reason: String },
}

impl OptionsError {
    fn unreadable(envelope: &'static str, reason: impl Into<String>) -> Self {
        OptionsError::Unreadable { envelope, reason: reason.into() }
    }

    fn bad_options(type_url: &str, reason: impl Into<String>) -> Self {
        OptionsError::BadOptions { type_url: type_url.to_string(), reason: reason.into() }
    }
}

impl StartInput {
    /// The runtime options carried, if they are moat's.
    pub fn runtime_options(&self) -> Option<&RuntimeOptions> {
        match self {
            StartInput::Options { options, .. } | StartInput::Bootstrap { options, .. } => {
                options.as_ref()
            }
            StartInput::Empty => None,
        }
    }
}

/// Classifies and decodes the stdin of `start`. Never panics, whatever the bytes.
pub fn parse_start_input(data: &[u8]) -> Result<StartInput, OptionsError> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(StartInput::Empty);
    }
    // No protobuf these messages can be starts with `{` (field 15, start-group wire type), so
    // a leading `{` is JSON. After leading whitespace it may also be protobuf (`\n` is the tag
    // of field 1): then JSON wins only if it parses.
    if data.first() == Some(&b'{') {
        return parse_json(data);
    }
    if data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        if let Ok(value) = serde_json::from_slice::<Value>(data) {
            return from_json(&value);
        }
    }
    let fields =
        read_fields(data).map_err(|reason| OptionsError::unreadable("protobuf", reason))?;
    // An Any has exactly fields 1 (type URL) and 2 (value). BootstrapParams uses 1 and 2 for
    // id and namespace, but a type URL always names a package ("a.b.C") and carries no
    // container-id-like value; BootstrapParams also almost always has fields 3-8.
    let only_any_fields = fields.iter().all(|f| f.number == 1 || f.number == 2);
    let type_url = fields.iter().find(|f| f.number == 1).and_then(|f| f.as_str());
    if let Some(type_url) = type_url.filter(|url| only_any_fields && looks_like_type_url(url)) {
        let value = fields.iter().find(|f| f.number == 2).and_then(|f| f.bytes.clone());
        let options = decode_options_any(type_url, value.as_deref().unwrap_or_default())?;
        return Ok(StartInput::Options { type_url: type_url.to_string(), options });
    }
    decode_bootstrap(&fields)
}

fn decode_bootstrap(fields: &[Field]) -> Result<StartInput, OptionsError> {
    if !fields.iter().any(|f| (1..=BOOTSTRAP_LAST_FIELD).contains(&f.number)) {
        return Err(OptionsError::unreadable(
            "protobuf",
            "a message that is neither an options Any nor a BootstrapParams",
        ));
    }
    let string = |n: u32| {
        fields
            .iter()
            .find(|f| f.number == n)
            .and_then(|f| f.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let bad = |reason: String| OptionsError::unreadable("BootstrapParams", reason);
    let mut options = None;
    for (i, ext) in fields.iter().filter(|f| f.number == 8).enumerate() {
        let ext_bytes = ext
            .bytes
            .as_deref()
            .ok_or_else(|| bad(format!("extension {i} is not a length-delimited message")))?;
        // Extension { google.protobuf.Any value = 1; }
        let ext_fields = read_fields(ext_bytes).map_err(|e| bad(format!("extension {i}: {e}")))?;
        let Some(any_bytes) =
            ext_fields.iter().find(|f| f.number == 1).and_then(|f| f.bytes.as_deref())
        else {
            return Err(bad(format!("extension {i} carries no Any")));
        };
        let any_fields =
            read_fields(any_bytes).map_err(|e| bad(format!("extension {i}'s Any: {e}")))?;
        let url = any_fields
            .iter()
            .find(|f| f.number == 1)
            .and_then(|f| f.as_str())
            .ok_or_else(|| bad(format!("extension {i}'s Any has no type URL")))?;
        let value = any_fields.iter().find(|f| f.number == 2).and_then(|f| f.bytes.as_deref());
        if let Some(found) = decode_options_any(url, value.unwrap_or_default())? {
            options = Some(found);
        }
    }
    Ok(StartInput::Bootstrap { namespace: string(2), containerd_version: string(4), options })
}

/// Decodes the task options of a Create request (an `Any`: `type_url` and its `value`).
/// An empty type URL means no options; runc's and moat's types that do not decode are an
/// error (the container is refused rather than run with stdio nobody can reopen).
pub fn decode_task_options(type_url: &str, value: &[u8]) -> Result<TaskOptions, OptionsError> {
    if type_url.is_empty() {
        return Ok(TaskOptions::None);
    }
    if let Some(options) = decode_options_any(type_url, value)? {
        return Ok(TaskOptions::Moat(options));
    }
    if !type_url.ends_with(RUNC_OPTIONS_TYPE) {
        return Ok(TaskOptions::Other { type_url: type_url.to_string() });
    }
    // containerd.runc.v1.Options { ... uint32 io_uid = 4; uint32 io_gid = 5; ... }
    let fields = read_fields(value).map_err(|e| OptionsError::bad_options(type_url, e))?;
    let id = |n: u32, name: &str| -> Result<u32, OptionsError> {
        let Some(field) = fields.iter().rev().find(|f| f.number == n) else { return Ok(0) };
        let raw = field.varint.ok_or_else(|| {
            OptionsError::bad_options(type_url, format!("{name} is not a varint"))
        })?;
        u32::try_from(raw).map_err(|_| {
            OptionsError::bad_options(type_url, format!("{name} {raw} is not a 32-bit ID"))
        })
    };
    let (uid, gid) = (id(4, "IoUid")?, id(5, "IoGid")?);
    let io_owner = (uid != 0 || gid != 0).then_some(IoOwner { uid, gid });
    Ok(TaskOptions::Runc { io_owner })
}

/// Decodes `runtimeoptions.v1.Options { type_url = 1; config_path = 2; config_body = 3 }`
/// when the Any is of that type; `Ok(None)` for another type.
pub fn decode_options_any(
    type_url: &str,
    value: &[u8],
) -> Result<Option<RuntimeOptions>, OptionsError> {
    if !type_url.ends_with(RUNTIME_OPTIONS_TYPE) {
        return Ok(None);
    }
    let fields = read_fields(value).map_err(|e| OptionsError::bad_options(type_url, e))?;
    let text = |n: u32, name: &str| -> Result<Option<String>, OptionsError> {
        let Some(field) = fields.iter().find(|f| f.number == n) else { return Ok(None) };
        let bytes = field.bytes.as_deref().ok_or_else(|| {
            OptionsError::bad_options(type_url, format!("{name} is not a string"))
        })?;
        let text = std::str::from_utf8(bytes).map_err(|e| {
            OptionsError::bad_options(type_url, format!("{name} is not UTF-8: {e}"))
        })?;
        Ok(Some(text).filter(|s| !s.is_empty()).map(str::to_string))
    };
    Ok(Some(RuntimeOptions {
        config_path: text(2, "ConfigPath")?,
        config_body: text(3, "ConfigBody")?,
    }))
}

// ---------------------------------------------------------------- JSON

/// `BootstrapParams` field names in both JSON spellings; an object with none of them is not one.
const BOOTSTRAP_KEYS: &[&str] = &[
    "instance_id",
    "instanceId",
    "namespace",
    "log_level",
    "logLevel",
    "containerd_version",
    "containerdVersion",
    "containerd_ttrpc_address",
    "containerdTtrpcAddress",
    "containerd_grpc_address",
    "containerdGrpcAddress",
    "containerd_binary",
    "containerdBinary",
    "extensions",
    "socket_dir",
    "socketDir",
];

fn parse_json(data: &[u8]) -> Result<StartInput, OptionsError> {
    let value = serde_json::from_slice::<Value>(data)
        .map_err(|e| OptionsError::unreadable("JSON", format!("JSON error: {e}")))?;
    from_json(&value)
}

fn from_json(value: &Value) -> Result<StartInput, OptionsError> {
    let Some(obj) = value.as_object() else {
        return Err(OptionsError::unreadable("JSON", "JSON that is not an object"));
    };
    // A bare options Any written as JSON.
    if let Some(type_url) = json_type_url(obj) {
        return Ok(StartInput::Options {
            type_url: type_url.to_string(),
            options: json_options_any(obj)?,
        });
    }
    if !obj.keys().any(|k| BOOTSTRAP_KEYS.contains(&k.as_str())) {
        return Err(OptionsError::unreadable(
            "JSON",
            "a JSON object with none of BootstrapParams' fields",
        ));
    }
    let text = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| obj.get(*k).and_then(Value::as_str))
            .unwrap_or_default()
            .to_string()
    };
    let bad = |reason: String| OptionsError::unreadable("BootstrapParams in JSON", reason);
    let extensions = match obj.get("extensions") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(list)) => list.as_slice(),
        Some(other) => return Err(bad(format!("extensions is not a list: {other}"))),
    };
    let mut options = None;
    for (i, ext) in extensions.iter().enumerate() {
        // Extension { google.protobuf.Any value = 1; }
        let any = ext
            .get("value")
            .and_then(Value::as_object)
            .ok_or_else(|| bad(format!("extension {i} carries no Any under \"value\"")))?;
        if json_type_url(any).is_none() {
            return Err(bad(format!("extension {i}'s Any has no type URL")));
        }
        if let Some(found) = json_options_any(any)? {
            options = Some(found);
        }
    }
    Ok(StartInput::Bootstrap {
        namespace: text(&["namespace"]),
        containerd_version: text(&["containerd_version", "containerdVersion"]),
        options,
    })
}

fn json_type_url(any: &Map<String, Value>) -> Option<&str> {
    ["@type", "type_url", "typeUrl"].iter().find_map(|k| any.get(*k).and_then(Value::as_str))
}

/// The runtime options in a JSON Any, if it is `runtimeoptions.v1.Options`.
fn json_options_any(any: &Map<String, Value>) -> Result<Option<RuntimeOptions>, OptionsError> {
    let Some(type_url) = json_type_url(any) else { return Ok(None) };
    if !type_url.ends_with(RUNTIME_OPTIONS_TYPE) {
        return Ok(None);
    }
    if let Some(value) = any.get("value") {
        let text = value
            .as_str()
            .ok_or_else(|| OptionsError::bad_options(type_url, "\"value\" is not a string"))?;
        let bytes = decode_base64(text)
            .ok_or_else(|| OptionsError::bad_options(type_url, "\"value\" is not base64"))?;
        return decode_options_any(type_url, &bytes);
    }
    // protojson: the message's fields inline, under their JSON or proto names.
    let text = |keys: &[&str]| -> Result<Option<String>, OptionsError> {
        for k in keys {
            match any.get(*k) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => return Ok(Some(s.clone()).filter(|s| !s.is_empty())),
                Some(other) => {
                    return Err(OptionsError::bad_options(
                        type_url,
                        format!("{k} is not a string: {other}"),
                    ))
                }
            }
        }
        Ok(None)
    };
    Ok(Some(RuntimeOptions {
        config_path: text(&["configPath", "config_path"])?,
        config_body: text(&["configBody", "config_body"])?,
    }))
}

/// Standard or URL-safe base64, padding optional (protojson accepts both for `bytes`).
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let sextet = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let digits = text.trim_end_matches('=').as_bytes();
    if digits.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= sextet(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

fn looks_like_type_url(s: &str) -> bool {
    !s.is_empty()
        && s.contains('.')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "./_-".contains(c))
}

/// One top-level field of a protobuf message; only length-delimited payloads and varints
/// are kept.
struct Field {
    number: u32,
    bytes: Option<Vec<u8>>,
    varint: Option<u64>,
}

impl Field {
    fn as_str(&self) -> Option<&str> {
        self.bytes.as_deref().and_then(|b| std::str::from_utf8(b).ok())
    }
}

fn read_fields(data: &[u8]) -> Result<Vec<Field>, String> {
    let mut input = CodedInputStream::from_bytes(data);
    let mut fields = Vec::new();
    loop {
        let tag = input.read_raw_tag_or_eof().map_err(|e| format!("protobuf wire error: {e}"))?;
        let Some(tag) = tag else { break };
        let number = tag >> 3;
        let wire =
            WireType::new(tag & 7).ok_or_else(|| format!("unknown wire type in tag {tag}"))?;
        if number == 0 {
            return Err("protobuf field number 0".into());
        }
        let wire_error =
            |e: containerd_shim_protos::protobuf::Error| format!("protobuf wire error: {e}");
        let (bytes, varint) = match wire {
            WireType::LengthDelimited => (Some(input.read_bytes().map_err(wire_error)?), None),
            WireType::Varint => (None, Some(input.read_raw_varint64().map_err(wire_error)?)),
            other => {
                input.skip_field(other).map_err(wire_error)?;
                (None, None)
            }
        };
        fields.push(Field { number, bytes, varint });
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::encode::{ld, varint};
    use super::*;

    fn options_msg(path: &str) -> Vec<u8> {
        [ld(1, b"io.containerd.moat.v1.Config"), ld(2, path.as_bytes())].concat()
    }

    fn any(type_url: &str, value: &[u8]) -> Vec<u8> {
        [ld(1, type_url.as_bytes()), ld(2, value)].concat()
    }

    #[test]
    fn empty_stdin_means_no_options() {
        assert_eq!(parse_start_input(b""), Ok(StartInput::Empty));
        assert_eq!(parse_start_input(b"\n"), Ok(StartInput::Empty));
    }

    #[test]
    fn containerd_1_6_options_any_yields_config_path() {
        let data = any("runtimeoptions.v1.Options", &options_msg("/etc/moat/pod.toml"));
        let input = parse_start_input(&data).expect("readable");
        let opts = input.runtime_options().expect("options");
        assert_eq!(opts.config_path.as_deref(), Some("/etc/moat/pod.toml"));
        assert_eq!(opts.config_body, None);
    }

    #[test]
    fn prefixed_type_url_and_inline_body_are_read() {
        let body = [ld(3, b"level = \"baseline\"\n")].concat();
        let data = any("type.googleapis.com/runtimeoptions.v1.Options", &body);
        let opts = parse_start_input(&data)
            .expect("readable")
            .runtime_options()
            .cloned()
            .expect("options");
        assert_eq!(opts.config_body.as_deref(), Some("level = \"baseline\"\n"));
        assert_eq!(opts.config_path, None);
    }

    #[test]
    fn runc_options_any_is_recognised_but_not_used() {
        // containerd.runc.v1.Options { binary_name = 6 } — another handler's options.
        let data = any("containerd.runc.v1.Options", &ld(6, b"runc"));
        let input = parse_start_input(&data).expect("readable");
        assert!(
            matches!(input, StartInput::Options { ref type_url, options: None } if type_url == "containerd.runc.v1.Options")
        );
        assert!(input.runtime_options().is_none());
    }

    #[test]
    fn containerd_2_3_bootstrap_params_carry_options_in_extensions() {
        let opts_any = any("runtimeoptions.v1.Options", &options_msg("/srv/moat.toml"));
        let extension = ld(1, &opts_any);
        let mut data = Vec::new();
        data.extend(ld(1, b"4f7c2d0a9b8e"));
        data.extend(ld(2, b"k8s.io"));
        data.extend([3 << 3, 0x7c]); // log_level = -4 would be a long varint; any varint is fine
        data.extend(ld(4, b"2.3.4"));
        data.extend(ld(5, b"unix:///run/containerd/containerd.sock.ttrpc"));
        data.extend(ld(6, b"unix:///run/containerd/containerd.sock"));
        data.extend(ld(7, b"/usr/bin/containerd"));
        data.extend(ld(8, &extension));
        match parse_start_input(&data).expect("readable") {
            StartInput::Bootstrap { namespace, containerd_version, options } => {
                assert_eq!(namespace, "k8s.io");
                assert_eq!(containerd_version, "2.3.4");
                assert_eq!(options.and_then(|o| o.config_path).as_deref(), Some("/srv/moat.toml"));
            }
            other => panic!("expected Bootstrap, got {other:?}"),
        }
    }

    #[test]
    fn bootstrap_params_without_extensions_have_no_options() {
        let data = [ld(1, b"abc"), ld(2, b"default"), ld(4, b"2.3.0")].concat();
        let input = parse_start_input(&data).expect("readable");
        assert!(matches!(input, StartInput::Bootstrap { options: None, .. }), "{input:?}");
    }

    /// The refusal for `data`, which must name `words`.
    fn refused(data: &[u8], words: &[&str]) {
        match parse_start_input(data) {
            Ok(input) => panic!("{data:?} was read as {input:?}"),
            Err(e) => {
                let msg = e.to_string();
                for w in words {
                    assert!(msg.contains(w), "{data:?}: the refusal does not say {w:?}: {msg}");
                }
                assert!(msg.contains("refusing"), "{msg}");
            }
        }
    }

    #[test]
    fn unreadable_protobuf_is_refused() {
        // Input: a truncated length-delimited field (claims 100 bytes, has 3).
        refused(&[0x0a, 100, b'a', b'b', b'c'], &["protobuf", "stdin of `start`"]);
        // Input: bytes that are not protobuf at all.
        refused(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", &["protobuf"]);
        // Input: well-formed protobuf with none of BootstrapParams' fields (field 100, a
        // two-byte tag).
        refused(&[0xa2, 0x06, 1, b'x'], &["neither an options Any nor a BootstrapParams"]);
    }

    #[test]
    fn moat_options_that_do_not_decode_are_refused_naming_the_type() {
        // Input: a runtimeoptions Any whose value is not a valid message.
        refused(
            &any("runtimeoptions.v1.Options", &[0x12, 50, b'x']),
            &["runtimeoptions.v1.Options"],
        );
        // Input: a ConfigPath that is not UTF-8.
        refused(
            &any("runtimeoptions.v1.Options", &ld(2, b"/etc/moat/\xff.toml")),
            &["runtimeoptions.v1.Options", "ConfigPath", "UTF-8"],
        );
        // Input: a ConfigBody written as a varint instead of a string.
        refused(&any("runtimeoptions.v1.Options", &[3 << 3, 1]), &["ConfigBody"]);
        // Input: BootstrapParams whose runtimeoptions extension does not decode.
        let bad_any = any("runtimeoptions.v1.Options", &[0x12, 50, b'x']);
        let data = [ld(2, b"k8s.io"), ld(8, &ld(1, &bad_any))].concat();
        refused(&data, &["runtimeoptions.v1.Options"]);
        // Input: BootstrapParams whose extension is not a message.
        let data = [ld(2, b"k8s.io"), ld(8, &[0x0a, 100])].concat();
        refused(&data, &["BootstrapParams", "extension 0"]);
    }

    #[test]
    fn garbage_json_is_refused() {
        // Input: truncated JSON.
        refused(br#"{"namespace": "k8s.io", "extensions": ["#, &["JSON"]);
        // Input: an empty object and an object of unrelated keys.
        refused(b"{}", &["none of BootstrapParams' fields"]);
        refused(br#"{"hello":"world"}"#, &["none of BootstrapParams' fields"]);
        // Input: an options Any whose value is not base64.
        refused(
            br#"{"namespace":"k8s.io","extensions":[{"value":{"type_url":"runtimeoptions.v1.Options","value":"!!not base64"}}]}"#,
            &["runtimeoptions.v1.Options", "base64"],
        );
        // Input: extensions of the wrong shape.
        refused(br#"{"namespace":"k8s.io","extensions":"nope"}"#, &["extensions is not a list"]);
        // Input: protojson options whose configPath is a number.
        refused(
            br#"{"@type":"runtimeoptions.v1.Options","configPath":42}"#,
            &["runtimeoptions.v1.Options", "configPath"],
        );
    }

    #[test]
    fn another_handlers_options_are_no_options_not_an_error() {
        // Input: containerd 2.x's runc options (IoUid/IoGid for hostUsers: false) in JSON.
        let input = parse_start_input(br#"{"@type":"containerd.runc.v1.Options","IoUid":1000}"#)
            .expect("readable");
        assert_eq!(input.runtime_options(), None);
    }

    #[test]
    fn json_bootstrap_params_with_encoding_json_any_carry_options() {
        // Input: Go encoding/json of BootstrapParams; the Any's value is base64 protobuf
        // (runtimeoptions.v1.Options { config_path = "/etc/moat/pod.toml" }).
        let data = br#"{"instance_id":"4f7c2d0a9b8e","namespace":"k8s.io","log_level":2,
            "containerd_version":"2.3.4","containerd_ttrpc_address":"/run/containerd/containerd.sock.ttrpc",
            "extensions":[{"value":{"type_url":"containerd.io/cri.v1.PodSandboxConfig","value":"CgA="}},
                          {"value":{"type_url":"runtimeoptions.v1.Options","value":"EhIvZXRjL21vYXQvcG9kLnRvbWw="}}]}"#;
        match parse_start_input(data).expect("readable") {
            StartInput::Bootstrap { namespace, containerd_version, options } => {
                assert_eq!(namespace, "k8s.io");
                assert_eq!(containerd_version, "2.3.4");
                assert_eq!(
                    options.and_then(|o| o.config_path).as_deref(),
                    Some("/etc/moat/pod.toml")
                );
            }
            other => panic!("expected Bootstrap, got {other:?}"),
        }
    }

    #[test]
    fn json_bootstrap_params_in_protojson_spelling_carry_options() {
        // Input: protojson, lowerCamel keys, the Any with `@type` and its fields inline.
        let data = br#"{"instanceId":"abc","namespace":"default","containerdVersion":"2.3.0",
            "extensions":[{"value":{"@type":"type.googleapis.com/runtimeoptions.v1.Options",
                                    "configBody":"level = \"baseline\"\n"}}]}"#;
        let input = parse_start_input(data).expect("readable");
        assert!(
            matches!(input, StartInput::Bootstrap { ref containerd_version, .. } if containerd_version == "2.3.0"),
            "{input:?}"
        );
        let opts = input.runtime_options().cloned().expect("options");
        assert_eq!(opts.config_body.as_deref(), Some("level = \"baseline\"\n"));
        assert_eq!(opts.config_path, None);
        // Input: the same with `@type` and a URL-safe unpadded base64 value.
        let data = br#"  {"instanceId":"abc","extensions":[{"value":{"@type":"runtimeoptions.v1.Options","value":"EhIvZXRjL21vYXQvcG9kLnRvbWw"}}]}"#;
        let opts =
            parse_start_input(data).expect("readable").runtime_options().cloned().expect("options");
        assert_eq!(opts.config_path.as_deref(), Some("/etc/moat/pod.toml"));
    }

    #[test]
    fn json_options_any_alone_is_read_as_options() {
        // Input: a bare Any in JSON (no BootstrapParams around it).
        let data =
            br#"{"type_url":"runtimeoptions.v1.Options","value":"GhNsZXZlbCA9ICJiYXNlbGluZSIK"}"#;
        let input = parse_start_input(data).expect("readable");
        assert!(
            matches!(input, StartInput::Options { ref type_url, .. } if type_url == "runtimeoptions.v1.Options"),
            "{input:?}"
        );
        assert_eq!(
            input.runtime_options().and_then(|o| o.config_body.clone()).as_deref(),
            Some("level = \"baseline\"\n")
        );
    }

    #[test]
    fn protobuf_starting_with_newline_brace_is_still_protobuf() {
        // Input: an options Any whose type URL is 123 bytes long, so its encoding begins with
        // "\n{" (tag of field 1, then the length 0x7b) — it must not be mistaken for JSON.
        let url = format!(
            "{}/runtimeoptions.v1.Options",
            "p".repeat(123 - "/runtimeoptions.v1.Options".len())
        );
        assert_eq!(url.len(), 123);
        let data = any(&url, &options_msg("/srv/moat.toml"));
        assert_eq!(&data[..2], b"\n{");
        let opts = parse_start_input(&data)
            .expect("readable")
            .runtime_options()
            .cloned()
            .expect("options");
        assert_eq!(opts.config_path.as_deref(), Some("/srv/moat.toml"));
    }

    #[test]
    fn task_options_of_runc_type_carry_the_io_owner() {
        // Input: what containerd 2.x's CRI sets for hostUsers: false (IoUid/IoGid = the host
        // IDs of the pod's root), beside runc's other fields.
        let value = [
            varint(1, 1),
            ld(6, b"runc"),
            varint(4, 3_000_000),
            varint(5, 3_000_001),
            ld(7, b"/run/runc"),
        ]
        .concat();
        for url in [RUNC_OPTIONS_TYPE, "type.googleapis.com/containerd.runc.v1.Options"] {
            assert_eq!(
                decode_task_options(url, &value),
                Ok(TaskOptions::Runc {
                    io_owner: Some(IoOwner { uid: 3_000_000, gid: 3_000_001 })
                })
            );
        }
        // Input: runc options without IoUid/IoGid (a handler's runc-typed options table).
        assert_eq!(
            decode_task_options(RUNC_OPTIONS_TYPE, &ld(6, b"runc")),
            Ok(TaskOptions::Runc { io_owner: None })
        );
        assert_eq!(
            decode_task_options(RUNC_OPTIONS_TYPE, &[]),
            Ok(TaskOptions::Runc { io_owner: None })
        );
    }

    #[test]
    fn task_options_of_moat_type_none_and_other_types() {
        assert_eq!(decode_task_options("", &[]), Ok(TaskOptions::None));
        let opts = decode_task_options(RUNTIME_OPTIONS_TYPE, &options_msg("/srv/m.toml"))
            .expect("decodes");
        assert_eq!(
            opts,
            TaskOptions::Moat(RuntimeOptions {
                config_path: Some("/srv/m.toml".into()),
                config_body: None
            })
        );
        assert_eq!(
            decode_task_options("io.kata.v1.Options", &ld(1, b"x")),
            Ok(TaskOptions::Other { type_url: "io.kata.v1.Options".into() })
        );
    }

    #[test]
    fn runc_task_options_that_do_not_decode_are_refused() {
        let msg = |r: Result<TaskOptions, OptionsError>| r.expect_err("must refuse").to_string();
        // Input: IoUid written as a string instead of a varint.
        let m = msg(decode_task_options(RUNC_OPTIONS_TYPE, &ld(4, b"1000")));
        assert!(m.contains("IoUid") && m.contains(RUNC_OPTIONS_TYPE), "{m}");
        // Input: IoGid beyond 32 bits.
        let m = msg(decode_task_options(RUNC_OPTIONS_TYPE, &varint(5, 1 << 40)));
        assert!(m.contains("IoGid") && m.contains("32-bit"), "{m}");
        // Input: a truncated message.
        let m = msg(decode_task_options(RUNC_OPTIONS_TYPE, &[0x3a, 40, b'r']));
        assert!(m.contains("protobuf"), "{m}");
    }

    #[test]
    fn base64_decodes_both_alphabets() {
        assert_eq!(decode_base64("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(decode_base64("aGVsbG8").as_deref(), Some(&b"hello"[..]));
        assert_eq!(decode_base64("-_8=").as_deref(), decode_base64("+/8=").as_deref());
        assert_eq!(decode_base64("").as_deref(), Some(&b""[..]));
        // Input: a character outside both alphabets, and an impossible length.
        assert_eq!(decode_base64("a$bc"), None);
        assert_eq!(decode_base64("abcde"), None);
    }

    mod no_panic {
        use super::super::parse_start_input;
        use super::{any as any_msg, ld};
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_give_input_or_an_error(
                data in proptest::collection::vec(any::<u8>(), 0..1024)
            ) {
                let _ = parse_start_input(&data);
            }

            #[test]
            fn arbitrary_text_gives_input_or_an_error(text in any::<String>()) {
                let _ = parse_start_input(text.as_bytes());
                let _ = parse_start_input(format!("{{{text}").as_bytes());
            }

            #[test]
            fn arbitrary_option_values_in_real_envelopes_give_input_or_an_error(
                value in proptest::collection::vec(any::<u8>(), 0..256),
                url in prop_oneof![
                    Just("runtimeoptions.v1.Options".to_string()),
                    Just("containerd.runc.v1.Options".to_string()),
                    "[a-z./]{0,30}",
                ],
            ) {
                let bare = any_msg(&url, &value);
                let _ = parse_start_input(&bare);
                let bootstrap = [ld(2, b"k8s.io"), ld(8, &ld(1, &bare))].concat();
                let _ = parse_start_input(&bootstrap);
                let _ = parse_start_input(&[ld(2, b"k8s.io"), ld(8, &value)].concat());
            }

            #[test]
            fn arbitrary_json_any_values_give_input_or_an_error(value in "\\PC{0,40}") {
                let data = serde_json::json!({
                    "namespace": "k8s.io",
                    "extensions": [{"value": {"type_url": "runtimeoptions.v1.Options", "value": value}}],
                });
                let _ = parse_start_input(data.to_string().as_bytes());
            }
        }
    }
}

/// Protobuf fields encoded by hand, for the tests that feed the decoders above (here and in
/// `task::io_owner`).
#[cfg(test)]
pub(crate) mod encode {
    /// A varint field (wire type 0).
    pub fn varint(number: u32, value: u64) -> Vec<u8> {
        let mut out = vec![(number << 3) as u8];
        push_varint(&mut out, value);
        out
    }

    /// A length-delimited field (wire type 2).
    pub fn ld(number: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((number << 3) | 2) as u8];
        push_varint(&mut out, payload.len() as u64);
        out.extend_from_slice(payload);
        out
    }

    fn push_varint(out: &mut Vec<u8>, mut value: u64) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
}
