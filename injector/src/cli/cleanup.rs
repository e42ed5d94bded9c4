//! `injector cleanup`: removes what a daemon that died without cleaning up
//! left in the kernel, without starting a daemon.

use crate::kernel::{cleanup, lock, netlink::Netlink};

pub async fn cleanup(json: bool) -> anyhow::Result<()> {
    let Some(_lock) = lock::try_exclusive()? else {
        anyhow::bail!(
            "an injector daemon is running on this host (it holds {}/dataplane.lock); \
             stop it instead: it removes its own faults on exit",
            lock::RUN_DIR
        );
    };
    let nl = Netlink::current()?;
    let removed = cleanup::leftovers(&nl).await;
    if json {
        println!("{}", serde_json::json!({ "removed": removed }));
    } else if removed.is_empty() {
        println!("nothing to remove: the kernel holds nothing of injector's");
    } else {
        for r in &removed {
            println!("removed {r}");
        }
    }
    Ok(())
}
