//! The OpenAPI 3 description of the whole API, served at GET /openapi.json
//! and kept in the repository as docs/openapi.json (a test fails when the
//! copy is stale; `INJECTOR_UPDATE_OPENAPI=1 cargo test -p injector
//! openapi` rewrites it). Toxic attribute schemas come from the fault
//! registry, so a new fault type shows up here by itself.

use serde_json::{Map, Value, json};

use crate::faults::Attributes;

/// JSON schema of one attribute field, probed through Go-style decoding:
/// a number field that refuses 0.5 is an integer.
fn field_schema(attrs: &Attributes, field: &str, zero: &Value) -> Value {
    match zero {
        Value::String(_) => json!({"type": "string"}),
        Value::Array(_) => json!({"type": "array", "items": {"type": "string"}}),
        _ => {
            let mut probe = attrs.clone();
            let mut m = Map::new();
            m.insert(field.to_string(), json!(0.5));
            if probe.merge(&m).is_ok() {
                json!({"type": "number"})
            } else {
                json!({"type": "integer", "format": "int64"})
            }
        }
    }
}

fn attribute_schemas() -> Map<String, Value> {
    let mut out = Map::new();
    for kind in Attributes::all_types() {
        let attrs = Attributes::new(kind).expect("registered type");
        let mut props = Map::new();
        if let Value::Object(fields) = attrs.to_json() {
            for (field, zero) in &fields {
                props.insert(field.clone(), field_schema(&attrs, field, zero));
            }
        }
        let mode = if attrs.works_in_proxy() {
            "listen and kernel-native proxies (where the kernel can do it)"
        } else {
            "kernel-native proxies only"
        };
        out.insert(
            format!("Attributes_{kind}"),
            json!({
                "type": "object",
                "description": format!("Attributes of `{kind}` toxics ({mode}). Missing fields are zero."),
                "properties": props,
            }),
        );
    }
    out
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"text/plain; charset=utf-8": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn body(name: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": r(name)}}})
}

fn param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
}

pub fn document() -> Value {
    let proxy = || json_response("The proxy", r("Proxy"));
    let toxic = || json_response("The toxic", r("Toxic"));
    let not_found = || error_response("proxy not found / toxic not found");
    let bad =
        || error_response("bad request body: ..., missing required field, invalid toxic type, ...");
    let toxic_names = Attributes::all_types();
    let mut schemas = json!({
        "Error": {
            "type": "object",
            "description": "Sent as text/plain with a trailing newline, as ToxiProxy does.",
            "required": ["error", "status"],
            "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}
        },
        "Target": {
            "type": "object",
            "description": "What a kernel-native proxy acts on: exactly one key.",
            "minProperties": 1, "maxProperties": 1,
            "properties": {
                "interface": {"type": "string"}, "netns": {"type": "string"},
                "cgroup": {"type": "string"}, "pid": {"type": "integer", "minimum": 1},
                "container": {"type": "string"}
            }
        },
        "Proxy": {
            "type": "object",
            "required": ["name", "listen", "upstream", "enabled", "Logger", "toxics"],
            "properties": {
                "name": {"type": "string"},
                "listen": {"type": "string", "description": "Concrete address once started; \"\" for kernel-native proxies."},
                "upstream": {"type": "string"},
                "enabled": {"type": "boolean"},
                "Logger": {"type": "object", "description": "Always {} (ToxiProxy prints it by accident)."},
                "toxics": {"type": "array", "items": r("Toxic")},
                "target": r("Target")
            }
        },
        "ProxyCreate": {
            "type": "object",
            "required": ["name", "upstream"],
            "description": "Keys match case-insensitively; unknown keys are ignored.",
            "properties": {
                "name": {"type": "string"},
                "listen": {"type": "string", "description": "host:port; port 0 picks one. Ignored with a target."},
                "upstream": {"type": "string", "description": "host:port to dial, or with a target: host:port, ip:port, cidr, cidr:port, *:port."},
                "enabled": {"type": "boolean", "default": true},
                "target": r("Target")
            }
        },
        "ProxyUpdate": {
            "type": "object",
            "description": "Absent fields keep their value; name is ignored.",
            "properties": {
                "listen": {"type": "string"}, "upstream": {"type": "string"},
                "enabled": {"type": "boolean"}, "target": r("Target")
            }
        },
        "PopulateResult": {
            "type": "object",
            "properties": {
                "error": {"type": "string"}, "status": {"type": "integer"},
                "proxies": {"type": "array", "nullable": true, "items": r("Proxy")}
            }
        },
        "Toxic": {
            "type": "object",
            "required": ["attributes", "name", "type", "stream", "toxicity"],
            "properties": {
                "attributes": {"type": "object", "description": "See Attributes_<type>."},
                "name": {"type": "string"},
                "type": {"type": "string", "enum": toxic_names},
                "stream": {"type": "string", "description": "As sent: upstream or downstream, any case."},
                "toxicity": {"type": "number", "format": "float"},
                "ttl_ms": {"type": "integer", "description": "Present when the toxic expires by itself."}
            }
        },
        "ToxicCreate": {
            "type": "object",
            "required": ["type"],
            "properties": {
                "name": {"type": "string", "description": "Default <type>_<stream>."},
                "type": {"type": "string", "enum": toxic_names},
                "stream": {"type": "string", "default": "downstream"},
                "toxicity": {"type": "number", "format": "float", "default": 1, "description": "Share of connections affected; not range-checked (>= 1 always, <= 0 never)."},
                "attributes": {"type": "object", "description": "See Attributes_<type>."},
                "ttl_ms": {"type": "integer", "minimum": 0, "description": "Remove the toxic after this many ms (0: never)."}
            }
        },
        "ExperimentSummary": {
            "type": "object",
            "properties": {
                "id": {"type": "string"}, "name": {"type": "string"},
                "state": {"type": "string", "enum": ["starting", "baseline", "running", "rolling_back", "verifying", "held", "broke", "aborted", "refused"]},
                "reason": {"type": "string", "nullable": true},
                "started_unix_ms": {"type": "integer"}, "elapsed_ms": {"type": "number"}
            }
        },
        "Experiment": {
            "type": "object",
            "description": "ExperimentSummary plus, in this order: hypothesis, blast_radius, abort, method, rollback, result (verdicts, detection window), then steady_state, phases, faults, stats, series (SLI buckets) and log.",
            "properties": {
                "id": {"type": "string"}, "state": {"type": "string"},
                "hypothesis": {"type": "object"}, "blast_radius": {"type": "object"}, "abort": {"type": "object"},
                "method": {"type": "array", "items": {"type": "object"}}, "result": {"type": "object"},
                "series": {"type": "object"}, "log": {"type": "array", "items": {"type": "object"}}
            }
        },
        "Zone": {
            "type": "object",
            "required": ["name", "cidrs"],
            "properties": {"name": {"type": "string"}, "cidrs": {"type": "array", "items": {"type": "string"}}}
        },
        "ZonePut": {
            "type": "object",
            "required": ["cidrs"],
            "description": "Addresses or CIDRs, IPv4 or IPv6; at least one.",
            "properties": {"cidrs": {"type": "array", "minItems": 1, "items": {"type": "string"}}}
        },
        "Partition": {
            "type": "object",
            "required": ["name", "a", "b"],
            "description": "Group a cannot reach group b and b cannot reach a; everyone else is unaffected. A member is a Target (its own addresses; a cgroup has none) or an address/CIDR string. ttl_ms heals it by itself.",
            "properties": {
                "name": {"type": "string"},
                "a": {"type": "array", "minItems": 1, "items": {"oneOf": [r("Target"), {"type": "string"}]}},
                "b": {"type": "array", "minItems": 1, "items": {"oneOf": [r("Target"), {"type": "string"}]}},
                "ttl_ms": {"type": "integer", "minimum": 0}
            }
        },
        "ToxicUpdate": {
            "type": "object",
            "description": "Attributes are merged field by field; name, type and stream are ignored.",
            "properties": {
                "attributes": {"type": "object"},
                "toxicity": {"type": "number", "format": "float"}
            }
        }
    });
    if let Some(m) = schemas.as_object_mut() {
        m.extend(attribute_schemas());
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "injector",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "ToxiProxy 2.12's REST API (quirks included), plus kernel-native proxies, \
                            kernel fault types, toxic ttl, /events, /experiments and /openapi.json. \
                            Differences: docs/toxiproxy-differences.md."
        },
        "paths": {
            "/version": {"get": {"summary": "ToxiProxy release whose API this is", "responses": {"200": {
                "description": "{\"version\": \"2.12.0\"}\\n with application/json;charset=utf-8",
                "content": {"application/json;charset=utf-8": {"schema": {"type": "object"}}}}}}},
            "/proxies": {
                "get": {"summary": "All proxies, keyed by name (sorted)", "responses": {"200": json_response("Proxies", json!({"type": "object", "additionalProperties": r("Proxy")}))}},
                "post": {"summary": "Create a proxy", "requestBody": body("ProxyCreate"), "responses": {
                    "201": json_response("Created", r("Proxy")), "400": bad(), "409": error_response("proxy already exists"),
                    "500": error_response("listen/bind failure (Go's text)"), "501": error_response("kernel feature missing")}}
            },
            "/populate": {"post": {"summary": "Add, keep or replace proxies in order", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "array", "items": r("ProxyCreate")}}}},
                "responses": {"201": json_response("Done", r("PopulateResult")), "400": json_response("Invalid input; nothing done", r("PopulateResult")), "500": json_response("Stopped at a failure; proxies done so far", r("PopulateResult"))}}},
            "/reset": {"post": {"summary": "Enable every proxy, remove every toxic and heal every partition", "responses": {"204": {"description": "Done"}, "500": error_response("a proxy could not start")}}},
            "/proxies/{proxy}": {
                "parameters": [param("proxy")],
                "get": {"summary": "One proxy", "responses": {"200": proxy(), "404": not_found()}},
                "post": {"summary": "Update a proxy (deprecated spelling of PATCH)", "requestBody": body("ProxyUpdate"), "responses": {"200": proxy(), "400": bad(), "404": not_found(), "500": error_response("address or bind failure")}},
                "patch": {"summary": "Update a proxy", "requestBody": body("ProxyUpdate"), "responses": {"200": proxy(), "400": bad(), "404": not_found(), "500": error_response("address or bind failure")}},
                "delete": {"summary": "Delete a proxy", "responses": {"204": {"description": "Deleted"}, "404": not_found()}}
            },
            "/proxies/{proxy}/toxics": {
                "parameters": [param("proxy")],
                "get": {"summary": "Toxics: upstream chain first, then downstream", "responses": {"200": json_response("Toxics", json!({"type": "array", "items": r("Toxic")})), "404": not_found()}},
                "post": {"summary": "Add a toxic (200, not 201)", "requestBody": body("ToxicCreate"), "responses": {"200": toxic(), "400": bad(), "404": not_found(), "409": error_response("toxic already exists"), "501": error_response("kernel feature missing")}}
            },
            "/proxies/{proxy}/toxics/{toxic}": {
                "parameters": [param("proxy"), param("toxic")],
                "get": {"summary": "One toxic", "responses": {"200": toxic(), "404": not_found()}},
                "post": {"summary": "Update a toxic (deprecated spelling of PATCH)", "requestBody": body("ToxicUpdate"), "responses": {"200": toxic(), "400": bad(), "404": not_found()}},
                "patch": {"summary": "Update a toxic; a failed update changes nothing", "requestBody": body("ToxicUpdate"), "responses": {"200": toxic(), "400": bad(), "404": not_found()}},
                "delete": {"summary": "Remove a toxic", "responses": {"204": {"description": "Removed"}, "404": not_found()}}
            },
            "/metrics": {"get": {"summary": "Prometheus text (any method)", "responses": {"200": {"description": "text/plain; version=0.0.4", "content": {"text/plain; version=0.0.4; charset=utf-8": {"schema": {"type": "string"}}}}}}},
            "/events": {"get": {"summary": "Fault changes, and each second the toxics that fired, as server-sent events", "responses": {"200": {"description": "data: {\"kind\",\"proxy\",\"toxic\",\"at_ms\"} plus packets_per_s, bytes_per_s, matched_per_s on fired events", "content": {"text/event-stream": {"schema": {"type": "string"}}}}}}},
            "/experiments": {
                "get": {"summary": "Experiments run by this daemon", "responses": {"200": json_response("Experiments", json!({"type": "array", "items": r("ExperimentSummary")}))}},
                "post": {"summary": "Start an experiment; the body is a policy (see policies/)", "requestBody": {"required": true, "content": {
                    "application/toml": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "object"}}}},
                    "responses": {"201": json_response("Started", r("ExperimentSummary")), "400": error_response("invalid policy (each problem as policy:line:column: ...), or command probes"), "409": error_response("another experiment is running on one of its proxies")}}
            },
            "/experiments/{id}": {
                "parameters": [param("id")],
                "get": {"summary": "State, verdicts and SLI series", "responses": {"200": json_response("The experiment", r("Experiment")), "404": error_response("experiment not found")}},
                "delete": {"summary": "Abort and roll back; answers when the rollback is done", "responses": {"200": json_response("The experiment, finished", r("Experiment")), "404": error_response("experiment not found"), "503": error_response("the rollback is still running")}}
            },
            "/experiments/{id}/log.md": {"parameters": [param("id")], "get": {"summary": "The written log (Markdown)", "responses": {"200": {"description": "Markdown", "content": {"text/markdown; charset=utf-8": {"schema": {"type": "string"}}}}, "404": error_response("experiment not found")}}},
            "/experiments/{id}/log.json": {"parameters": [param("id")], "get": {"summary": "The written log (JSON)", "responses": {"200": json_response("The experiment", r("Experiment")), "404": error_response("experiment not found")}}},
            "/experiments/{id}/chart.svg": {"parameters": [param("id")], "get": {"summary": "Success rate and latency over time, faults shaded", "responses": {"200": {"description": "SVG", "content": {"image/svg+xml": {"schema": {"type": "string"}}}}, "404": error_response("experiment not found")}}},
            "/zones": {"get": {"summary": "Zones (named CIDR sets for blackhole/loss `zones`), keyed by name", "responses": {"200": json_response("Zones", json!({"type": "object", "additionalProperties": r("Zone")})), "501": error_response("no kernel data plane")}}},
            "/zones/{zone}": {
                "parameters": [param("zone")],
                "get": {"summary": "One zone", "responses": {"200": json_response("The zone", r("Zone")), "404": error_response("zone not found")}},
                "put": {"summary": "Define or replace a zone", "requestBody": body("ZonePut"), "responses": {"200": json_response("Replaced", r("Zone")), "201": json_response("Created", r("Zone")), "400": error_response("invalid address or prefix, no CIDR"), "409": error_response("a toxic in force uses the zone")}},
                "post": {"summary": "Same as PUT", "requestBody": body("ZonePut"), "responses": {"200": json_response("Replaced", r("Zone")), "201": json_response("Created", r("Zone")), "400": error_response("invalid address or prefix, no CIDR"), "409": error_response("a toxic in force uses the zone")}},
                "delete": {"summary": "Remove a zone", "responses": {"204": {"description": "Removed"}, "404": error_response("zone not found"), "409": error_response("a toxic in force uses the zone")}}
            },
            "/partitions": {
                "get": {"summary": "Partitions in force, keyed by name", "responses": {"200": json_response("Partitions", json!({"type": "object", "additionalProperties": r("Partition")}))}},
                "post": {"summary": "Cut group a from group b, both ways", "requestBody": body("Partition"), "responses": {"201": json_response("In force", r("Partition")), "400": error_response("bad body, a group without addresses, no target"), "403": error_response("a target the guard rails refuse"), "404": error_response("target not found"), "409": error_response("partition already exists"), "501": error_response("no kernel data plane")}}
            },
            "/partitions/{partition}": {
                "parameters": [param("partition")],
                "get": {"summary": "One partition", "responses": {"200": json_response("The partition", r("Partition")), "404": error_response("partition not found")}},
                "delete": {"summary": "Heal a partition", "responses": {"204": {"description": "Healed"}, "404": error_response("partition not found")}}
            },
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": json_response("OpenAPI 3", json!({"type": "object"}))}}}
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "Required when the daemon was started with a token."}}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Route;
    use axum::http::Method;

    #[test]
    fn every_documented_operation_is_routed_and_every_route_documented() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        let methods = ["get", "post", "patch", "delete", "put", "head", "options"];
        for (path, ops) in paths {
            let concrete = path.replace("{proxy}", "p").replace("{toxic}", "t");
            let route = Route::parse(&concrete).unwrap_or_else(|| panic!("{path} is not routed"));
            for m in methods {
                let method = Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
                let documented = ops.get(m).is_some();
                // /metrics answers any method; only GET is documented.
                if route == Route::Metrics && !documented {
                    continue;
                }
                assert_eq!(route.allows(&method), documented, "{m} {path}");
            }
        }
        for templ in [
            "/reset",
            "/proxies",
            "/populate",
            "/proxies/{proxy}",
            "/proxies/{proxy}/toxics",
            "/proxies/{proxy}/toxics/{toxic}",
            "/version",
            "/metrics",
            "/events",
            "/openapi.json",
            "/experiments",
            "/experiments/{id}",
            "/zones",
            "/zones/{zone}",
            "/partitions",
            "/partitions/{partition}",
        ] {
            assert!(paths.contains_key(templ), "{templ} is not documented");
        }
    }

    #[test]
    fn attribute_schemas_follow_the_registry() {
        let s = attribute_schemas();
        assert_eq!(s.len(), Attributes::all_types().len());
        assert_eq!(
            s["Attributes_latency"]["properties"],
            json!({"latency": {"type": "integer", "format": "int64"}, "jitter": {"type": "integer", "format": "int64"}})
        );
        assert_eq!(s["Attributes_noop"]["properties"], json!({}));
    }

    #[test]
    fn checked_in_copy_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
        let fresh = format!("{}\n", serde_json::to_string_pretty(&document()).unwrap());
        if std::env::var_os("INJECTOR_UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &fresh).unwrap();
        }
        let kept = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            kept == fresh,
            "docs/openapi.json is stale: run INJECTOR_UPDATE_OPENAPI=1 cargo test -p injector openapi"
        );
    }
}
