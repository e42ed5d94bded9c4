//! `injector partition list|add|heal`: the /partitions API (group A cut
//! from group B both ways). Members are targets as `--target` takes them
//! (`netns:n1`, `container:db`, ...) or addresses and CIDRs.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{Value, json};

use super::{Client, seg, serve::parse_duration, table::print_map};
use crate::model::Target;

const TARGET_KINDS: [&str; 5] = ["interface", "netns", "cgroup", "pid", "container"];

#[derive(Subcommand, Debug)]
pub enum PartitionCommand {
    /// List the partitions in force.
    #[command(visible_alias = "ls")]
    List,
    /// Cut group A from group B, both ways.
    #[command(visible_alias = "create")]
    Add(AddArgs),
    /// Heal a partition.
    #[command(visible_aliases = ["rm", "remove", "delete"])]
    Heal { name: String },
}

#[derive(Args, Debug)]
pub struct AddArgs {
    name: String,
    /// A member of group A: kind:value (netns:n1, container:web, ...) or an address/CIDR.
    #[arg(short = 'a', long = "a", required = true)]
    a: Vec<String>,
    /// A member of group B.
    #[arg(short = 'b', long = "b", required = true)]
    b: Vec<String>,
    /// Heal by itself after this long (e.g. 30s, 5m).
    #[arg(long, value_parser = parse_duration)]
    ttl: Option<std::time::Duration>,
}

/// `netns:n1` -> `{"netns": "n1"}`; anything else is an address or CIDR
/// (IPv6 addresses have colons too: only the known kinds make a target).
fn member(text: &str) -> anyhow::Result<Value> {
    match text.split_once(':') {
        Some((kind, _)) if TARGET_KINDS.contains(&kind) => Ok(Target::from_cli(text)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("partition member {text:?}"))?
            .to_json()),
        _ => Ok(Value::String(text.to_string())),
    }
}

fn members(list: &[String]) -> anyhow::Result<Value> {
    Ok(Value::Array(
        list.iter()
            .map(|m| member(m))
            .collect::<anyhow::Result<_>>()?,
    ))
}

fn side(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|m| match m {
            Value::String(s) => s.clone(),
            Value::Object(o) => o
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}:{s}"),
                    other => format!("{k}:{other}"),
                })
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn run(client: &Client, cmd: &PartitionCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        PartitionCommand::List => {
            let all = client.call(Method::GET, "/partitions", None).await?;
            print_map(
                &all,
                json,
                &["NAME", "A", "B"],
                "no partitions",
                |name, p| vec![name.to_string(), side(&p["a"]), side(&p["b"])],
            );
        }
        PartitionCommand::Add(args) => {
            let mut body = json!({
                "name": args.name,
                "a": members(&args.a)?,
                "b": members(&args.b)?,
            });
            if let Some(ttl) = args.ttl {
                body["ttl_ms"] = json!(ttl.as_millis() as u64);
            }
            let p = client
                .call(Method::POST, "/partitions", Some(&body))
                .await?;
            if json {
                println!("{p}");
            } else {
                println!(
                    "partition {}: {} <-/-> {}",
                    args.name,
                    side(&p["a"]),
                    side(&p["b"])
                );
            }
        }
        PartitionCommand::Heal { name } => {
            client
                .call(Method::DELETE, &format!("/partitions/{}", seg(name)), None)
                .await?;
            if json {
                println!("{}", json!({ "healed": name }));
            } else {
                println!("healed partition {name}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_targets_or_addresses() {
        assert_eq!(member("netns:n1").unwrap(), json!({"netns": "n1"}));
        assert_eq!(member("pid:42").unwrap(), json!({"pid": 42}));
        assert_eq!(member("10.0.0.0/8").unwrap(), json!("10.0.0.0/8"));
        assert_eq!(member("fd00::1").unwrap(), json!("fd00::1"));
        assert!(member("pid:x").is_err());
        assert_eq!(
            side(&json!([{"container": "db"}, "10.0.0.0/8"])),
            "container:db 10.0.0.0/8"
        );
    }
}
