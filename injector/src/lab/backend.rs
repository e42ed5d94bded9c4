//! Where the lab runs: Docker containers, or (without Docker) network
//! namespaces and cgroups made by injector itself. The shop is the same on
//! both; only the target kind of its proxies differs.

use serde_json::Value;

use super::{BackendChoice, containers, docker::Docker, namespaces, plan::Lab};
use crate::model::Target;

pub enum Backend {
    Docker(Docker),
    Netns,
}

impl Backend {
    /// The backend asked for; `auto` falls back to namespaces, and says why.
    pub async fn choose(choice: BackendChoice) -> anyhow::Result<(Backend, Vec<String>)> {
        match choice {
            BackendChoice::Docker => Ok((Backend::Docker(Docker::connect().await?), vec![])),
            BackendChoice::Netns => Ok((Backend::Netns, vec![])),
            BackendChoice::Auto => match Docker::connect().await {
                Ok(d) => Ok((Backend::Docker(d), vec![])),
                Err(e) => Ok((
                    Backend::Netns,
                    vec![format!(
                        "Docker is not available ({e:#}): building the lab from plain \
                         network namespaces and cgroups instead"
                    )],
                )),
            },
        }
    }

    /// The backend holding lab `name`, and the lab as it was brought up.
    pub async fn locate(name: &str) -> anyhow::Result<Option<(Backend, Lab)>> {
        super::plan::check_name(name)?;
        if let Ok(d) = Docker::connect().await
            && let Some(subnet) = containers::subnet(&d, name).await?
        {
            return Ok(Some((Backend::Docker(d), Lab::new(name, Some(&subnet))?)));
        }
        if let Some(subnet) = namespaces::subnet(name) {
            return Ok(Some((Backend::Netns, Lab::new(name, Some(&subnet))?)));
        }
        Ok(None)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::Docker(_) => "docker",
            Backend::Netns => "netns",
        }
    }

    /// What a kernel-native proxy names to act on an instance's traffic.
    pub fn target(&self, lab: &Lab, instance: &str) -> Target {
        match self {
            Backend::Docker(_) => Target::Container(lab.container(instance)),
            Backend::Netns => Target::Netns(lab.container(instance)),
        }
    }

    pub fn target_json(&self, lab: &Lab, instance: &str) -> Value {
        self.target(lab, instance).to_json()
    }

    /// The subnet the lab is on now, when it differs from `lab`'s.
    pub async fn other_subnet(&self, lab: &Lab) -> anyhow::Result<Option<String>> {
        let now = match self {
            Backend::Docker(d) => containers::subnet(d, &lab.name).await?,
            Backend::Netns => namespaces::subnet(&lab.name),
        };
        Ok(now.filter(|s| *s != lab.subnet()))
    }

    /// Builds what is missing; returns what it did, in words.
    pub async fn up(&self, lab: &Lab) -> anyhow::Result<Vec<String>> {
        match self {
            Backend::Docker(d) => {
                let r = containers::up(d, lab).await?;
                let mut notes = vec![if r.image_built {
                    format!("image {} built (once per injector binary)", r.image)
                } else {
                    format!("image {} (cached)", r.image)
                }];
                if !r.created.is_empty() {
                    notes.push(format!("started {}", r.created.join(", ")));
                }
                if !r.kept.is_empty() {
                    notes.push(format!("already running: {}", r.kept.join(", ")));
                }
                Ok(notes)
            }
            Backend::Netns => namespaces::up(lab).await,
        }
    }

    pub fn logs_hint(&self, lab: &Lab) -> String {
        match self {
            Backend::Docker(_) => format!("docker logs {}", lab.container("web")),
            Backend::Netns => format!("{}/*.log", namespaces::state_dir(&lab.name).display()),
        }
    }

    /// instance -> state word, for `status`.
    pub async fn states(&self, lab: &Lab) -> anyhow::Result<Vec<(String, String)>> {
        match self {
            Backend::Docker(d) => containers::states(d, &lab.name).await,
            Backend::Netns => Ok(namespaces::states(&lab.name)),
        }
    }
}

/// `down` on every backend: a lab is removed wherever parts of it remain.
pub async fn down_everywhere(name: &str, images: bool) -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    match Docker::connect().await {
        Ok(d) => {
            removed.extend(containers::down(&d, name).await?);
            if images {
                removed.extend(containers::remove_images(&d).await?);
            }
        }
        Err(e) if images => return Err(e.context("cannot remove the lab images")),
        Err(_) => {}
    }
    removed.extend(namespaces::down(name).await?);
    Ok(removed)
}
