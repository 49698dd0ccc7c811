//! Frame conformance against `protocol.schema.json` (`@openclaw/gateway-protocol`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use serde_json::Value;

/// Why a frame does not conform.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The frame's text.
    pub frame: String,
    /// What is wrong.
    pub what: String,
}

/// The gateway protocol's JSON Schema, with validators for the frame and
/// for each request method's params.
pub struct Schema {
    root: Value,
    frame: jsonschema::Validator,
    params: Mutex<BTreeMap<String, Option<jsonschema::Validator>>>,
}

impl Schema {
    /// Loads and compiles `protocol.schema.json`.
    pub fn load(path: &Path) -> Schema {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let root: Value = serde_json::from_str(&text).expect("protocol.schema.json is JSON");
        assert!(
            root["definitions"]["ConnectParams"].is_object(),
            "protocol.schema.json has no definitions.ConnectParams"
        );
        let frame = jsonschema::validator_for(&root).expect("compile the frame schema");
        Schema {
            root,
            frame,
            params: Mutex::new(BTreeMap::new()),
        }
    }

    /// The definition name of a request method's params: the known node
    /// methods explicitly, else the schema's naming (`node.pending.ack` →
    /// `NodePendingAckParams`).
    pub fn params_definition(method: &str) -> String {
        match method {
            "connect" => "ConnectParams".into(),
            "node.invoke.result" => "NodeInvokeResultParams".into(),
            "node.event" => "NodeEventParams".into(),
            _ => {
                let mut name: String = method
                    .split(['.', '-', '_'])
                    .map(|part| {
                        let mut c = part.chars();
                        c.next()
                            .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                            .unwrap_or_default()
                    })
                    .collect();
                name.push_str("Params");
                name
            }
        }
    }

    /// A validator for `definitions.<name>`, or `None` if there is no such definition.
    fn with_definition<T>(
        &self,
        name: &str,
        f: impl FnOnce(&jsonschema::Validator) -> T,
    ) -> Option<T> {
        let mut cache = self.params.lock().unwrap_or_else(|e| e.into_inner());
        let v = cache.entry(name.to_owned()).or_insert_with(|| {
            if !self.root["definitions"][name].is_object() {
                return None;
            }
            let mut doc = serde_json::json!({
                "$schema": self.root["$schema"].clone(),
                "definitions": self.root["definitions"].clone(),
                "allOf": [{"$ref": format!("#/definitions/{name}")}],
            });
            if doc["$schema"].is_null() {
                doc.as_object_mut().expect("object").remove("$schema");
            }
            Some(jsonschema::validator_for(&doc).expect("compile a definition"))
        });
        v.as_ref().map(f)
    }

    /// Validates `value` against `definitions.<name>`; `Err` lists the errors.
    pub fn validate_definition(&self, name: &str, value: &Value) -> Result<(), String> {
        self.with_definition(name, |v| {
            let errors: Vec<String> = v
                .iter_errors(value)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join("; "))
            }
        })
        .unwrap_or_else(|| Err(format!("the schema has no definition {name}")))
    }

    /// Validates one frame's text: the frame itself (request, response or
    /// event), and for a request its params against the method's definition.
    pub fn check_frame(&self, text: &str) -> Result<(), Violation> {
        let bad = |what: String| Violation {
            frame: text.to_owned(),
            what,
        };
        let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let errors: Vec<String> = self
            .frame
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if !errors.is_empty() {
            return Err(bad(format!("frame: {}", errors.join("; "))));
        }
        if value["type"] == "req" {
            let method = value["method"].as_str().unwrap_or_default();
            let def = Schema::params_definition(method);
            let params = value.get("params").cloned().unwrap_or(Value::Null);
            self.validate_definition(&def, &params)
                .map_err(|e| bad(format!("params of {method} ({def}): {e}")))?;
        }
        Ok(())
    }
}
