//! `injector zone list|set|remove`: the /zones API (named CIDR sets that
//! `blackhole` and `loss` toxics cut with `"zones": [...]`).

use clap::Subcommand;
use hyper::Method;
use serde_json::{Value, json};

use super::{Client, seg, table::print_map};

#[derive(Subcommand, Debug)]
pub enum ZoneCommand {
    /// List the zones and their CIDRs.
    #[command(visible_alias = "ls")]
    List,
    /// Define a zone, or replace its CIDRs.
    Set {
        name: String,
        /// Addresses or CIDRs, IPv4 or IPv6.
        #[arg(required = true)]
        cidrs: Vec<String>,
    },
    /// Remove a zone (refused while a toxic uses it).
    #[command(visible_aliases = ["rm", "delete"])]
    Remove { name: String },
}

pub async fn run(client: &Client, cmd: &ZoneCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        ZoneCommand::List => {
            let all = client.call(Method::GET, "/zones", None).await?;
            print_map(
                &all,
                json,
                &["NAME", "CIDRS"],
                "no zones (define one: injector zone set az-b 10.0.2.0/24)",
                |name, z| vec![name.to_string(), cidrs(z)],
            );
        }
        ZoneCommand::Set { name, cidrs: list } => {
            let z = client
                .call(
                    Method::PUT,
                    &format!("/zones/{}", seg(name)),
                    Some(&json!({ "cidrs": list })),
                )
                .await?;
            if json {
                println!("{z}");
            } else {
                println!("zone {name}: {}", cidrs(&z));
            }
        }
        ZoneCommand::Remove { name } => {
            client
                .call(Method::DELETE, &format!("/zones/{}", seg(name)), None)
                .await?;
            if json {
                println!("{}", json!({ "removed": name }));
            } else {
                println!("removed zone {name}");
            }
        }
    }
    Ok(())
}

fn cidrs(z: &Value) -> String {
    z["cidrs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}
