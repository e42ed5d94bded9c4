//! The lab on Docker: one network with a fixed subnet (stable addresses)
//! and one container per service, all labelled with the lab's name so
//! `down` finds them again, also after a crash. `up` is idempotent: what
//! runs with the current image stays, what is missing or stale is made.

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{
    docker::{Docker, LABEL},
    image::{self, BINARY, Rootfs},
    plan::Lab,
};

const SUBNET_LABEL: &str = "io.injector.lab.subnet";
const INSTANCE_LABEL: &str = "io.injector.lab.instance";
const IMAGE_TAG_LABEL: &str = "io.injector.lab.image-tag";

/// What `up` did, for the summary.
#[derive(Default)]
pub struct UpReport {
    pub image: String,
    pub image_built: bool,
    pub created: Vec<String>,
    pub kept: Vec<String>,
}

fn label_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get("Labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
}

fn id_of(v: &Value) -> String {
    v.get("Id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

pub async fn up(docker: &Docker, lab: &Lab) -> anyhow::Result<UpReport> {
    let rootfs = Rootfs::of_current_exe()?;
    let (image, built) = image::ensure(docker, &rootfs).await?;
    let mut report = UpReport {
        image: image.clone(),
        image_built: built,
        ..UpReport::default()
    };
    let mine = format!("{LABEL}={}", lab.name);
    // A network of this lab with another subnet: start over.
    let networks = docker.networks(&mine).await?;
    let current = networks
        .iter()
        .find(|n| label_of(n, SUBNET_LABEL) == Some(&lab.subnet()));
    if current.is_none() && !networks.is_empty() {
        down(docker, &lab.name).await?;
    }
    if current.is_none() {
        create_network(docker, lab).await?;
    }
    let existing = docker.containers(&mine).await?;
    for s in lab.services() {
        let name = lab.container(s.instance);
        let found = existing
            .iter()
            .find(|c| label_of(c, INSTANCE_LABEL) == Some(s.instance));
        if let Some(c) = found {
            let fresh = label_of(c, IMAGE_TAG_LABEL) == Some(&image);
            let running = c.get("State").and_then(Value::as_str) == Some("running");
            if fresh && running {
                report.kept.push(name);
                continue;
            }
            docker.remove_container(&id_of(c)).await?;
        }
        let mut cmd = vec![BINARY.to_string()];
        cmd.extend(s.args(lab));
        let mut env = vec![format!("INJECTOR_LAB={}", lab.name)];
        if !rootfs.lib_dirs.is_empty() {
            env.push(format!("LD_LIBRARY_PATH={}", rootfs.lib_dirs.join(":")));
        }
        let config = json!({
            "Image": image,
            "Cmd": cmd,
            "Env": env,
            "Hostname": s.instance,
            "Labels": {
                LABEL: lab.name,
                INSTANCE_LABEL: s.instance,
                IMAGE_TAG_LABEL: image,
            },
            "HostConfig": {
                "NetworkMode": lab.network(),
                "RestartPolicy": {"Name": "unless-stopped"},
            },
            "NetworkingConfig": {"EndpointsConfig": {lab.network(): {
                "IPAMConfig": {"IPv4Address": s.ip.to_string()},
                "Aliases": [s.instance],
            }}},
        });
        let r = docker
            .post(&format!("/containers/create?name={name}"), config)
            .await?;
        if !r.status.is_success() {
            bail!("cannot create container {name}: {}", r.message());
        }
        let id = r
            .json()
            .get("Id")
            .and_then(Value::as_str)
            .context("Docker did not say the new container's id")?
            .to_string();
        let r = docker
            .post(&format!("/containers/{id}/start"), json!({}))
            .await?;
        if !r.status.is_success() {
            bail!("cannot start container {name}: {}", r.message());
        }
        report.created.push(name);
    }
    Ok(report)
}

async fn create_network(docker: &Docker, lab: &Lab) -> anyhow::Result<()> {
    let body = json!({
        "Name": lab.network(),
        "Driver": "bridge",
        "CheckDuplicate": true,
        "IPAM": {"Config": [{"Subnet": lab.subnet(), "Gateway": lab.gateway().to_string()}]},
        "Options": {"com.docker.network.bridge.name": lab.bridge()},
        "Labels": {LABEL: lab.name, SUBNET_LABEL: lab.subnet()},
    });
    let r = docker.post("/networks/create", body).await?;
    if !r.status.is_success() {
        bail!(
            "cannot create the Docker network {} ({}): {} (another network on that subnet? \
             give the lab another one with --subnet)",
            lab.network(),
            lab.subnet(),
            r.message()
        );
    }
    Ok(())
}

/// Removes every container and network labelled with this lab's name.
/// Images stay (shared, cached); `remove_images` takes them too.
pub async fn down(docker: &Docker, name: &str) -> anyhow::Result<Vec<String>> {
    let mine = format!("{LABEL}={name}");
    let mut removed = Vec::new();
    for c in docker.containers(&mine).await? {
        docker.remove_container(&id_of(&c)).await?;
        if let Some(n) = c
            .get("Names")
            .and_then(|n| n.get(0))
            .and_then(Value::as_str)
        {
            removed.push(n.trim_start_matches('/').to_string());
        }
    }
    for n in docker.networks(&mine).await? {
        docker.remove_network(&id_of(&n)).await?;
        if let Some(name) = n.get("Name").and_then(Value::as_str) {
            removed.push(format!("network {name}"));
        }
    }
    Ok(removed)
}

/// Removes the lab images no container uses any more.
pub async fn remove_images(docker: &Docker) -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    for i in docker.images(super::docker::IMAGE_LABEL).await? {
        let r = docker.delete(&format!("/images/{}", id_of(&i))).await?;
        if r.status.is_success() {
            removed.push(
                i.get("RepoTags")
                    .and_then(|t| t.get(0))
                    .and_then(Value::as_str)
                    .unwrap_or("injector-lab image")
                    .to_string(),
            );
        }
    }
    Ok(removed)
}

/// State of each container of the lab: instance -> Docker's state word.
pub async fn states(docker: &Docker, name: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mine = format!("{LABEL}={name}");
    let mut out = Vec::new();
    for c in docker.containers(&mine).await? {
        out.push((
            label_of(&c, INSTANCE_LABEL).unwrap_or("?").to_string(),
            c.get("State")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string(),
        ));
    }
    Ok(out)
}

/// The subnet the lab was brought up with.
pub async fn subnet(docker: &Docker, name: &str) -> anyhow::Result<Option<String>> {
    Ok(docker
        .networks(&format!("{LABEL}={name}"))
        .await?
        .iter()
        .find_map(|n| label_of(n, SUBNET_LABEL).map(str::to_string)))
}
