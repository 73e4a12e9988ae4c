//! Every request checked against the Proxmox API schema that fakepve ships (its
//! `data/pve-api.json.gz`, from Proxmox's API viewer; `data/pve-api.meta.json` says where and
//! when it was taken).
//!
//! A request passes when: its path is under `/api2/json` and matches a path template of the
//! schema (a literal segment before a `{variable}`, as Proxmox routes); the template has the
//! method; a body is form-encoded (and a `GET` has none); every parameter, from the path, the
//! query and the body, is one the method declares (Proxmox's methods allow no others); every
//! parameter the method requires is there, once; and each value has the declared type
//! (integer, number, boolean as Proxmox spells it), is in the enumeration, within the minimum,
//! maximum and lengths, and a node name where the format is `pve-node`. Regular-expression
//! patterns are not checked here (the fake checks them, and answers 400).

use super::fake::Recorded;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

pub struct Schema {
    paths: serde_json::Map<String, Value>,
}

impl Schema {
    pub fn load(path: &Path) -> Schema {
        let text = std::fs::read_to_string(path).expect("the schema file");
        let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
        // The file is {"paths": {...}}; the harness writes it as fakepve ships it.
        let paths = schema
            .get("paths")
            .and_then(Value::as_object)
            .expect("the schema has `paths`")
            .clone();
        assert!(paths.len() > 400, "a suspiciously small schema");
        Schema { paths }
    }

    /// The template a path matches, with the values of its variables.
    fn route(&self, segments: &[String]) -> Option<(&str, BTreeMap<String, String>)> {
        let mut best: Option<(Vec<bool>, &str, BTreeMap<String, String>)> = None;
        for template in self.paths.keys() {
            let parts: Vec<&str> = template.trim_matches('/').split('/').collect();
            if parts.len() != segments.len() {
                continue;
            }
            let mut literal = Vec::new();
            let mut values = BTreeMap::new();
            let fits = parts.iter().zip(segments).all(|(part, segment)| {
                if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    literal.push(false);
                    values.insert(name.to_string(), segment.clone());
                    !segment.is_empty()
                } else {
                    literal.push(true);
                    part == segment
                }
            });
            // Proxmox prefers a literal segment to a variable, from the left.
            if fits && best.as_ref().is_none_or(|(rank, ..)| literal > *rank) {
                best = Some((literal, template.as_str(), values));
            }
        }
        best.map(|(_, template, values)| (template, values))
    }

    /// Everything wrong with a request, empty when it is right.
    pub fn check(&self, request: &Recorded) -> Vec<String> {
        let mut wrong = Vec::new();
        let (path, query) = match request.path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (request.path.as_str(), None),
        };
        let Some(rest) = path.strip_prefix("/api2/json/") else {
            return vec![format!("`{path}` is not under /api2/json")];
        };
        let segments: Vec<String> = rest.split('/').map(percent_decode).collect();
        let Some((template, path_values)) = self.route(&segments) else {
            return vec![format!("no path of the schema matches `{path}`")];
        };
        let Some(method) = self.paths[template].get(&request.method) else {
            return vec![format!("`{template}` has no method {}", request.method)];
        };

        let mut given: Vec<(String, String)> = Vec::new();
        if let Some(query) = query {
            given.extend(form_decode(query));
        }
        if !request.body.is_empty() {
            if request.method == "GET" {
                wrong.push("a GET with a body".into());
            }
            if request.content_type != "application/x-www-form-urlencoded" {
                wrong.push(format!(
                    "a body of type `{}`, not form-encoded",
                    request.content_type
                ));
            }
            given.extend(form_decode(&request.body));
        }
        for (name, _) in &given {
            if path_values.contains_key(name) {
                wrong.push(format!("`{name}` given again beside the path"));
            }
        }
        given.extend(path_values);

        let empty = serde_json::Map::new();
        let parameters = method.get("parameters");
        let properties = parameters
            .and_then(|p| p.get("properties"))
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let closed = parameters
            .and_then(|p| p.get("additionalProperties"))
            .is_none_or(|additional| additional == 0 || additional == false);
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (name, value) in &given {
            *seen.entry(name.as_str()).or_default() += 1;
            match property(properties, name) {
                Some(schema) => {
                    if let Err(why) = check_value(schema, value) {
                        wrong.push(format!("`{name}={value}`: {why}"));
                    }
                }
                None if closed => wrong.push(format!("`{name}` is not a parameter of the method")),
                None => {}
            }
        }
        for (name, count) in &seen {
            let array = property(properties, name)
                .and_then(|schema| schema.get("type"))
                .is_some_and(|kind| kind == "array");
            if *count > 1 && !array {
                wrong.push(format!("`{name}` given {count} times"));
            }
        }
        for (name, schema) in properties {
            let optional = schema.get("optional").is_some_and(|o| o == 1 || o == true);
            if !optional && !name.contains("[n]") && !seen.contains_key(name.as_str()) {
                wrong.push(format!("the required `{name}` is missing"));
            }
        }
        wrong
            .into_iter()
            .map(|why| format!("{} {}: {why}", request.method, request.path))
            .collect()
    }
}

/// The schema of a parameter; `net0` is declared as `net[n]`.
fn property<'a>(properties: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(schema) = properties.get(name) {
        return Some(schema);
    }
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if base.len() < name.len() {
        return properties.get(&format!("{base}[n]"));
    }
    None
}

fn number_of(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

/// A value as Proxmox's schema checks it.
fn check_value(schema: &Value, value: &str) -> Result<(), String> {
    let kind = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("string");
    let mut numeric = None;
    match kind {
        "integer" => {
            let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err("not an integer".into());
            }
            numeric = value.parse::<f64>().ok();
        }
        "number" => {
            numeric = Some(value.parse::<f64>().map_err(|_| "not a number")?);
        }
        "boolean" => {
            let spellings = ["1", "0", "true", "false", "yes", "no", "on", "off"];
            if !spellings.contains(&value.to_ascii_lowercase().as_str()) {
                return Err("not a boolean".into());
            }
        }
        "string" | "array" => {}
        other => {
            return Err(format!(
                "a parameter of type {other} cannot be form-encoded"
            ));
        }
    }
    if let Some(number) = numeric {
        if let Some(minimum) = number_of(schema.get("minimum"))
            && number < minimum
        {
            return Err(format!("under the minimum {minimum}"));
        }
        if let Some(maximum) = number_of(schema.get("maximum"))
            && number > maximum
        {
            return Err(format!("over the maximum {maximum}"));
        }
    }
    if let Some(choices) = schema.get("enum").and_then(Value::as_array) {
        let allowed = choices.iter().any(|choice| match choice {
            Value::String(text) => text == value,
            Value::Number(number) => number.as_f64() == value.parse::<f64>().ok(),
            _ => false,
        });
        if !allowed {
            return Err(format!("not one of {}", Value::Array(choices.clone())));
        }
    }
    let length = value.chars().count() as f64;
    if number_of(schema.get("maxLength")).is_some_and(|max| length > max) {
        return Err("too long".into());
    }
    if number_of(schema.get("minLength")).is_some_and(|min| length < min) {
        return Err("too short".into());
    }
    if schema.get("format").and_then(Value::as_str) == Some("pve-node") && !is_node_name(value) {
        return Err("not a node name".into());
    }
    Ok(())
}

/// Proxmox's `pve-node`: a DNS label.
fn is_node_name(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("");
            if let Ok(byte) = u8::from_str_radix(hex, 16) {
                out.push(byte);
                index += 3;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_decode(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&name.replace('+', " ")),
                percent_decode(&value.replace('+', " ")),
            )
        })
        .collect()
}

#[test]
fn the_checker_finds_what_is_wrong() {
    // Not against the real schema (that needs the fake): a small one of the same shape.
    let schema = Schema {
        paths: serde_json::from_str(
            r#"{
              "/nodes/{node}/status": {"POST": {"parameters": {"additionalProperties": 0, "properties": {
                  "node": {"type": "string", "format": "pve-node"},
                  "command": {"type": "string", "enum": ["reboot", "shutdown"]}}}}},
              "/nodes/{node}/qemu/{vmid}/status/start": {"POST": {"parameters": {"additionalProperties": 0, "properties": {
                  "node": {"type": "string", "format": "pve-node"},
                  "vmid": {"type": "integer", "minimum": 100, "maximum": 999999999},
                  "skiplock": {"type": "boolean", "optional": 1}}}}}
            }"#,
        )
        .unwrap(),
    };
    let request = |method: &str, path: &str, body: &str| Recorded {
        method: method.into(),
        path: path.into(),
        content_type: if body.is_empty() {
            String::new()
        } else {
            "application/x-www-form-urlencoded".into()
        },
        body: body.into(),
        auth: "token:root@pam!vigil".into(),
    };
    assert!(
        schema
            .check(&request(
                "POST",
                "/api2/json/nodes/pve/status",
                "command=shutdown"
            ))
            .is_empty()
    );
    assert!(
        schema
            .check(&request(
                "POST",
                "/api2/json/nodes/pve/qemu/100/status/start",
                "skiplock=1"
            ))
            .is_empty()
    );
    let wrong = |method, path, body| schema.check(&request(method, path, body)).join("\n");
    assert!(
        wrong("POST", "/api2/json/nodes/pve/status", "")
            .contains("the required `command` is missing")
    );
    assert!(wrong("POST", "/api2/json/nodes/pve/status", "command=halt").contains("not one of"));
    assert!(
        wrong(
            "POST",
            "/api2/json/nodes/pve/status",
            "command=shutdown&force=1"
        )
        .contains("`force` is not a parameter")
    );
    assert!(wrong("GET", "/api2/json/nodes/pve/status", "").contains("has no method GET"));
    assert!(
        wrong("POST", "/api2/json/nodes/pve/qemu/99/status/start", "")
            .contains("under the minimum")
    );
    assert!(
        wrong("POST", "/api2/json/nodes/pve/qemu/abc/status/start", "").contains("not an integer")
    );
    assert!(
        wrong(
            "POST",
            "/api2/json/nodes/pve/qemu/100/status/start",
            "skiplock=maybe"
        )
        .contains("not a boolean")
    );
    assert!(
        wrong("POST", "/api2/json/nodes/pve/qemu/100/status/begin", "")
            .contains("no path of the schema")
    );
    assert!(
        wrong("POST", "/api2/json/nodes/p%20ve/status", "command=shutdown")
            .contains("not a node name")
    );
    assert!(
        wrong(
            "POST",
            "/api2/json/nodes/pve/status",
            "command=shutdown&command=reboot"
        )
        .contains("given 2 times")
    );
    assert!(
        wrong("POST", "/nodes/pve/status", "command=shutdown").contains("not under /api2/json")
    );
}
